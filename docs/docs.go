// Package docs embeds the API documentation generated from the proto
// (buf.gen.docs.yaml), so that relaisd serves exactly the committed files.
package docs

import _ "embed"

// OpenAPI is the Swagger 2.0 description of the HTTP/JSON gateway.
//
//go:embed openapi/relais.swagger.json
var OpenAPI []byte

// Reference is the human-readable API reference (Markdown).
//
//go:embed api.md
var Reference []byte
