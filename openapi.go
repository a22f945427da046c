package orderflow

import _ "embed"

// OpenAPI is the REST contract, openapi.yaml, as served at GET /openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPI []byte
