package httpjson

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// Mapping maps the fields of a proto message (by proto field name) to
// values of the upstream's JSON.
type Mapping map[string]Field

// Field says where a proto field's value is in the JSON and how to read it.
type Field struct {
	// Path is a dot-separated path from the current JSON object
	// ("data.quotient"); "." is the current object itself.
	Path string `yaml:"path"`
	// Required makes a missing value an error; otherwise the field is
	// left unset (a partial record).
	Required bool `yaml:"required"`
	// Items maps a nested message, or each element of a list of messages.
	Items Mapping `yaml:"items"`
	// Enum translates upstream codes to enum value names ("CNAF" →
	// "REGIME_CNAF"); without it the JSON must hold the value name.
	Enum map[string]string `yaml:"enum"`
	// Split turns a JSON string into a list of strings ("Zoé Marie").
	Split string `yaml:"split"`
	// DateFormat reads a date in this Go layout ("02/01/2006") and
	// writes it as YYYY-MM-DD.
	DateFormat string `yaml:"date_format"`
}

// check verifies the mapping against the message type at start-up.
func (m Mapping) check(md protoreflect.MessageDescriptor) error {
	for name, f := range m {
		fd := md.Fields().ByName(protoreflect.Name(name))
		if fd == nil {
			return fmt.Errorf("%s has no field %q", md.FullName(), name)
		}
		if f.Path == "" {
			return fmt.Errorf("%s.%s: path is required", md.FullName(), name)
		}
		switch {
		case fd.Kind() == protoreflect.MessageKind:
			if len(f.Items) == 0 {
				return fmt.Errorf("%s.%s: a message field needs items", md.FullName(), name)
			}
			if err := f.Items.check(fd.Message()); err != nil {
				return err
			}
		case fd.Kind() == protoreflect.EnumKind:
			for from, to := range f.Enum {
				if fd.Enum().Values().ByName(protoreflect.Name(to)) == nil {
					return fmt.Errorf("%s.%s: enum %q → %q: no such value", md.FullName(), name, from, to)
				}
			}
		}
	}
	return nil
}

// fill sets msg's fields from the JSON value obj. Any value of the wrong
// shape is an error; the caller then discards msg whole.
func (m Mapping) fill(obj any, msg protoreflect.Message) error {
	for name, f := range m {
		fd := msg.Descriptor().Fields().ByName(protoreflect.Name(name))
		v, ok := lookup(obj, f.Path)
		if !ok || v == nil {
			if f.Required {
				return fmt.Errorf("%s: missing", f.Path)
			}
			continue
		}
		if err := f.set(msg, fd, v); err != nil {
			return fmt.Errorf("%s: %w", f.Path, err)
		}
	}
	return nil
}

func (f Field) set(msg protoreflect.Message, fd protoreflect.FieldDescriptor, v any) error {
	if fd.IsList() {
		list := msg.Mutable(fd).List()
		var items []any
		switch x := v.(type) {
		case []any:
			items = x
		case string:
			if f.Split == "" || fd.Kind() != protoreflect.StringKind {
				return errors.New("want a list")
			}
			for _, s := range strings.Split(x, f.Split) {
				if s = strings.TrimSpace(s); s != "" {
					items = append(items, s)
				}
			}
		default:
			return errors.New("want a list")
		}
		if len(items) > 1000 {
			return errors.New("list too long")
		}
		for i, item := range items {
			if fd.Kind() == protoreflect.MessageKind {
				elem := list.NewElement()
				if err := f.Items.fill(item, elem.Message()); err != nil {
					return fmt.Errorf("[%d].%w", i, err)
				}
				list.Append(elem)
				continue
			}
			val, err := f.scalar(fd, item)
			if err != nil {
				return fmt.Errorf("[%d]: %w", i, err)
			}
			list.Append(val)
		}
		return nil
	}
	if fd.Kind() == protoreflect.MessageKind {
		return f.Items.fill(v, msg.Mutable(fd).Message())
	}
	val, err := f.scalar(fd, v)
	if err != nil {
		return err
	}
	msg.Set(fd, val)
	return nil
}

func (f Field) scalar(fd protoreflect.FieldDescriptor, v any) (protoreflect.Value, error) {
	switch fd.Kind() {
	case protoreflect.StringKind:
		s, ok := v.(string)
		if !ok {
			return protoreflect.Value{}, errors.New("want a string")
		}
		if f.DateFormat != "" {
			t, err := time.Parse(f.DateFormat, s)
			if err != nil {
				return protoreflect.Value{}, errors.New("not a date in the configured format")
			}
			s = t.Format(time.DateOnly)
		}
		if len(s) > 10000 {
			return protoreflect.Value{}, errors.New("string too long")
		}
		return protoreflect.ValueOfString(s), nil
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		n, err := integer(v)
		if err != nil || n < math.MinInt32 || n > math.MaxInt32 {
			return protoreflect.Value{}, errors.New("want a 32-bit integer")
		}
		return protoreflect.ValueOfInt32(int32(n)), nil
	case protoreflect.BoolKind:
		b, ok := v.(bool)
		if !ok {
			return protoreflect.Value{}, errors.New("want true or false")
		}
		return protoreflect.ValueOfBool(b), nil
	case protoreflect.EnumKind:
		s, ok := v.(string)
		if !ok {
			return protoreflect.Value{}, errors.New("want an enum code")
		}
		if to, ok := f.Enum[s]; ok {
			s = to
		}
		ev := fd.Enum().Values().ByName(protoreflect.Name(s))
		if ev == nil || ev.Number() == 0 {
			return protoreflect.Value{}, errors.New("unknown enum code")
		}
		return protoreflect.ValueOfEnum(ev.Number()), nil
	default:
		return protoreflect.Value{}, fmt.Errorf("field kind %s is not mapped", fd.Kind())
	}
}

// integer accepts a JSON number or a string of digits.
func integer(v any) (int64, error) {
	switch x := v.(type) {
	case json.Number:
		return x.Int64()
	case string:
		return strconv.ParseInt(strings.TrimSpace(x), 10, 64)
	default:
		return 0, errors.New("not an integer")
	}
}

// lookup follows a dot-separated path through JSON objects.
func lookup(v any, path string) (any, bool) {
	if path == "." {
		return v, true
	}
	for _, part := range strings.Split(path, ".") {
		obj, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = obj[part]; !ok {
			return nil, false
		}
	}
	return v, true
}
