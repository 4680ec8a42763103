package catalog

import (
	"fmt"
	"strings"
)

// Markdown renders the scope catalogue as the docs/scopes.md page: for
// each service and method, each scope and the response fields it covers,
// with every path a field mask may name.
func (c *Catalog) Markdown() string {
	var b strings.Builder
	b.WriteString("# Scope catalogue\n\n")
	b.WriteString("<!-- Generated from the proto scope options by `make generate`. Do not edit. -->\n\n")
	b.WriteString(`A scope is the unit an operator grants. Each top-level personal-data
field of a response carries one scope (` + "`(relais.options.v1.scope)`" + ` in the
proto), and the fields nested in it share that scope; a consumer receives
a field only when one of its grants for the service holds that scope.
Fields marked not personal (the source metadata) are always returned.

A call's ` + "`field_mask`" + ` narrows the answer per field. Its paths are the
field names below: top-level (` + "`value`" + `) or nested (` + "`address.postal_code`" + `);
through a repeated message a path names that field in every element
(` + "`children.birth_date`" + `). The answer holds the fields of *granted scopes ∩
named fields*, plus the source metadata; no mask means every granted
field. A named field outside the grant is silently left out; a mask
naming only such fields is refused with ` + "`scope_not_granted`" + `. A
malformed or unknown path is refused with ` + "`invalid_field_mask`" + `, each
one named in a ` + "`google.rpc.BadRequest`" + ` violation
(` + "`field_mask.paths[i]`" + `). Paths are proto field names (` + "`postal_code`" + `);
over HTTPS/JSON the mask takes its JSON form, one string of
comma-separated lowerCamelCase paths
(` + "`\"fieldMask\": \"value,address.postalCode\"`" + `). The audit record names
the fields requested and returned as mask paths.
`)
	for _, m := range c.Methods() {
		fmt.Fprintf(&b, "\n## `%s`\n\n", m.FullMethod)
		fmt.Fprintf(&b, "Response: `%s`\n\n", m.Output.Descriptor().FullName())
		b.WriteString("| scope | fields | nested fields a mask may name |\n|---|---|---|\n")
		for _, s := range m.Scopes.Sorted() {
			var names, nested []string
			for _, f := range m.Fields {
				if f.Scope == s {
					names = append(names, "`"+f.Name+"`")
					nested = appendNested(nested, f.Fields)
				}
			}
			if nested == nil {
				nested = []string{"—"}
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s |\n", s, strings.Join(names, ", "), strings.Join(nested, ", "))
		}
		var public []string
		for _, f := range m.Fields {
			if f.NotPersonal {
				public = append(public, "`"+f.Name+"`")
			}
		}
		if len(public) > 0 {
			fmt.Fprintf(&b, "| (always returned, not personal) | %s | — |\n", strings.Join(public, ", "))
		}
	}
	return b.String()
}

// appendNested appends the paths of fields and of their own sub-fields.
func appendNested(out []string, fields []Field) []string {
	for _, f := range fields {
		out = append(out, "`"+f.Path+"`")
		out = appendNested(out, f.Fields)
	}
	return out
}
