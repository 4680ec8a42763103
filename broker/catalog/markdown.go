package catalog

import (
	"fmt"
	"strings"
)

// Markdown renders the scope catalogue as the docs/scopes.md page: for
// each service and method, each scope and the response fields it covers.
func (c *Catalog) Markdown() string {
	var b strings.Builder
	b.WriteString("# Scope catalogue\n\n")
	b.WriteString("<!-- Generated from the proto scope options by `make generate`. Do not edit. -->\n\n")
	b.WriteString("A scope is the unit an operator grants. Each personal-data field of a\n")
	b.WriteString("response carries one scope (`(relais.options.v1.scope)` in the proto);\n")
	b.WriteString("a consumer receives a field only when one of its grants for the service\n")
	b.WriteString("holds that scope. Fields marked not personal (the source metadata) are\n")
	b.WriteString("always returned.\n")
	for _, m := range c.Methods() {
		fmt.Fprintf(&b, "\n## `%s`\n\n", m.FullMethod)
		fmt.Fprintf(&b, "Response: `%s`\n\n", m.Output.Descriptor().FullName())
		b.WriteString("| scope | fields |\n|---|---|\n")
		for _, s := range m.Scopes.Sorted() {
			var names []string
			for _, f := range m.Fields {
				if f.Scope == s {
					names = append(names, "`"+f.Name+"`")
				}
			}
			fmt.Fprintf(&b, "| `%s` | %s |\n", s, strings.Join(names, ", "))
		}
		var public []string
		for _, f := range m.Fields {
			if f.NotPersonal {
				public = append(public, "`"+f.Name+"`")
			}
		}
		if len(public) > 0 {
			fmt.Fprintf(&b, "| (always returned, not personal) | %s |\n", strings.Join(public, ", "))
		}
	}
	return b.String()
}
