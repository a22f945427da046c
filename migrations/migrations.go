// Package migrations embeds orderflow's versioned Atlas migrations: the SQL files written by
// cmd/migrationgen (or by hand, for data) and their integrity file atlas.sum.
package migrations

import "embed"

// FS holds every migration file and atlas.sum, as committed in this directory.
//
//go:embed *.sql atlas.sum
var FS embed.FS
