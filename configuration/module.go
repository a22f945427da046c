package configuration

import "go.uber.org/fx"

// Dir is the directory that holds instance.json and secrets.json. The process supplies
// it, for example fx.Supply(configuration.Dir(dir)).
type Dir string

// Module provides the loaded, validated *Config from the supplied Dir and the process
// environment.
var Module = fx.Module("configuration",
	fx.Provide(New),
)

// New loads the configuration of dir with Load.
func New(dir Dir) (*Config, error) {
	return Load(string(dir))
}
