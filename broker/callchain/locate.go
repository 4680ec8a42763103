package callchain

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// The locators name the first field of a request that does not decode,
// for the caller's BadRequest detail. They only run once decoding has
// failed, walk the message's descriptor, and report field paths and fixed
// problem texts: never a byte of the request itself.

// locateWire returns the path (proto names, as protovalidate writes them:
// subject.birth_name, children[1].given_names[0]) of the first field of
// b, a message of md, that does not decode, and what is wrong with it.
// The path is empty when the culprit is not a known field (an unknown
// field's own encoding, a broken tag).
func locateWire(md protoreflect.MessageDescriptor, b []byte, depth int) (path, problem string) {
	counts := map[protowire.Number]int{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", "truncated or invalid protobuf"
		}
		b = b[n:]
		m := protowire.ConsumeFieldValue(num, typ, b)
		fd := md.Fields().ByNumber(num)
		if fd == nil {
			if m < 0 {
				return "", "an unknown field does not decode (truncated, or nested too deep)"
			}
			b = b[m:]
			continue
		}
		name := string(fd.Name())
		if fd.IsList() {
			name += "[" + strconv.Itoa(counts[num]) + "]"
			counts[num]++
		}
		if m < 0 {
			return name, "truncated or invalid protobuf"
		}
		val := b[:m]
		b = b[m:]
		if typ != protowire.BytesType {
			continue
		}
		v, _ := protowire.ConsumeBytes(val)
		switch {
		case fd.Kind() == protoreflect.StringKind:
			if !utf8.Valid(v) {
				return name, "invalid UTF-8"
			}
		case fd.Message() != nil:
			if depth >= maxDepth {
				return name, "nested too deep"
			}
			if sub, problem := locateWire(fd.Message(), v, depth+1); sub != "" || problem != "" {
				return join(name, sub), problem
			}
		}
	}
	return "", ""
}

// locateJSON is locateWire for a JSON body: it tries each member of the
// object alone, with protojson as the judge, and descends into the first
// one that fails.
func locateJSON(md protoreflect.MessageDescriptor, b []byte, depth int) (path, problem string) {
	if !json.Valid(b) {
		if depth == 0 {
			return "", "the body is not valid JSON"
		}
		return "", ""
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return "", "not a JSON object"
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return "", ""
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return "", ""
		}
		fd := md.Fields().ByJSONName(key)
		if fd == nil {
			fd = md.Fields().ByTextName(key)
		}
		if fd == nil {
			// Not echoed: an unknown name is the caller's text.
			return "", "unknown field name"
		}
		one, _ := json.Marshal(map[string]json.RawMessage{key: raw})
		if protojson.Unmarshal(one, dynamicpb.NewMessage(md)) == nil {
			continue
		}
		name := string(fd.Name())
		if fd.Message() == nil || wellKnown(fd.Message()) || fd.IsMap() || depth >= maxDepth {
			return name, "invalid value"
		}
		if !fd.IsList() {
			if sub, problem := locateJSON(fd.Message(), raw, depth+1); sub != "" || problem != "" {
				return join(name, sub), problem
			}
			return name, "invalid value"
		}
		var elems []json.RawMessage
		if json.Unmarshal(raw, &elems) != nil {
			return name, "must be a list"
		}
		for i, el := range elems {
			if sub, problem := locateJSON(fd.Message(), el, depth+1); sub != "" || problem != "" {
				return join(name+"["+strconv.Itoa(i)+"]", sub), problem
			}
		}
		return name, "invalid value"
	}
	return "", ""
}

func join(parent, sub string) string {
	if sub == "" {
		return parent
	}
	return parent + "." + sub
}

// wellKnown reports the google.protobuf types protojson writes as
// scalars (timestamps, field masks…): a leaf for locateJSON.
func wellKnown(md protoreflect.MessageDescriptor) bool {
	return md.ParentFile().Package() == "google.protobuf"
}
