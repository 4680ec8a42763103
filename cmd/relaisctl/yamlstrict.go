package main

import (
	"fmt"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// decodeStrict decodes a YAML document into v (a pointer to a struct) and
// refuses unknown keys and values of the wrong kind, naming the YAML key
// path and the line (yaml.v3 would name Go types: main.applyConsumer).
func decodeStrict(raw []byte, v any) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return err
	}
	if len(doc.Content) == 0 {
		return nil
	}
	root := doc.Content[0]
	if err := checkNode(root, reflect.TypeOf(v).Elem(), ""); err != nil {
		return err
	}
	return root.Decode(v)
}

// checkNode checks n against the Go type t; path is the YAML key path.
func checkNode(n *yaml.Node, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	where := path
	if where == "" {
		where = "the document"
	}
	// A type that reads itself (a duration, a designation) checks its
	// value: its refusal gets the key path and the line.
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			return fmt.Errorf("line %d: %s: %v", n.Line, where, err)
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return fmt.Errorf("line %d: %s: want a mapping of keys (%s)", n.Line, where, strings.Join(yamlKeys(t), ", "))
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			f, ok := yamlField(t, k.Value)
			if !ok {
				return fmt.Errorf("line %d: unknown key %q in %s (known keys: %s)", k.Line, k.Value, where, strings.Join(yamlKeys(t), ", "))
			}
			if err := checkNode(val, f.Type, join(path, k.Value)); err != nil {
				return err
			}
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return fmt.Errorf("line %d: %s: want a list", n.Line, where)
		}
		for i, c := range n.Content {
			if err := checkNode(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			return fmt.Errorf("line %d: %s: want a string", n.Line, where)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64, reflect.Bool:
		want := map[bool]string{true: "a number", false: "true or false"}[t.Kind() != reflect.Bool]
		if t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64 {
			want = "a whole number"
		}
		if n.Kind != yaml.ScalarNode {
			return fmt.Errorf("line %d: %s: want %s", n.Line, where, want)
		}
		whole := t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64
		if err := n.Decode(reflect.New(t).Interface()); err != nil || (whole && n.Tag == "!!float") {
			return fmt.Errorf("line %d: %s: want %s, not %q", n.Line, where, want, n.Value)
		}
	}
	return nil
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "" {
		name = strings.ToLower(f.Name)
	}
	return name
}

func yamlField(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		if f := t.Field(i); f.IsExported() && yamlName(f) == key && f.Tag.Get("yaml") != "-" {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func yamlKeys(t reflect.Type) []string {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		if f := t.Field(i); f.IsExported() && f.Tag.Get("yaml") != "-" {
			keys = append(keys, yamlName(f))
		}
	}
	return keys
}
