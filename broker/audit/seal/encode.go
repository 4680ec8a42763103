package seal

import (
	"errors"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/relais-broker/relais/broker/audit"
)

// appendSealed appends the JSON of s without its hash: the bytes
// json.Marshal(s) gives with Hash empty, exactly (field order, HTML
// escaping, RFC 3339 times, omitempty and omitzero), written by hand so
// that sealing a record on the hot path costs no reflection and one
// buffer. TestEncoderIsJSONMarshal and FuzzEncoder hold it to
// json.Marshal, and fail when audit.Record gains a field this does not
// write.
func appendSealed(b []byte, chain string, seq uint64, prev string, r *audit.Record) ([]byte, error) {
	b = append(b, '{')
	if chain != "" {
		b = append(b, `"chain":`...)
		b = appendString(b, chain)
		b = append(b, ',')
	}
	b = append(b, `"seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"prev":`...)
	b = appendString(b, prev)
	b = append(b, `,"record":{"Time":`...)
	var err error
	if b, err = appendTime(b, r.Time); err != nil {
		return nil, err
	}
	for _, f := range [...]struct {
		name string
		v    string
	}{
		{`,"RequestID":`, r.RequestID}, {`,"TraceID":`, r.TraceID}, {`,"Consumer":`, r.Consumer}, {`,"Operator":`, r.Operator},
		{`,"Target":`, r.Target}, {`,"CertSerial":`, r.CertSerial}, {`,"Recipient":`, r.Recipient}, {`,"Method":`, r.Method},
		{`,"Purpose":`, r.Purpose}, {`,"CaseReference":`, r.CaseReference}, {`,"Agent":`, r.Agent}, {`,"Subject":`, r.Subject},
	} {
		b = append(b, f.name...)
		b = appendString(b, f.v)
	}
	b = append(b, `,"FieldsRequested":`...)
	b = appendStrings(b, r.FieldsRequested)
	b = append(b, `,"FieldsReturned":`...)
	b = appendStrings(b, r.FieldsReturned)
	b = append(b, `,"Source":`...)
	b = appendString(b, r.Source)
	b = append(b, `,"Code":`...)
	b = appendString(b, r.Code)
	b = append(b, `,"Reason":`...)
	b = appendString(b, r.Reason)
	b = append(b, `,"Latency":`...)
	b = strconv.AppendInt(b, int64(r.Latency), 10)
	if r.Note != "" {
		b = append(b, `,"Note":`...)
		b = appendString(b, r.Note)
	}
	if r.SubjectOrigin != "" {
		b = append(b, `,"SubjectOrigin":`...)
		b = appendString(b, r.SubjectOrigin)
	}
	if !r.DiscloseAfter.IsZero() {
		b = append(b, `,"DiscloseAfter":`...)
		if b, err = appendTime(b, r.DiscloseAfter); err != nil {
			return nil, err
		}
	}
	if r.DisclosureReference != "" {
		b = append(b, `,"DisclosureReference":`...)
		b = appendString(b, r.DisclosureReference)
	}
	return append(b, "}}"...), nil
}

// recordFields is the number of fields appendSealed writes; a test
// compares it with audit.Record's.
const recordFields = 23

// appendTime is time.Time's MarshalJSON, appended.
func appendTime(b []byte, t time.Time) ([]byte, error) {
	n0 := len(b) + 1
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	switch {
	case b[n0+len("9999")] != '-':
		return nil, errors.New("time outside of the years 0 to 9999")
	case b[len(b)-1] != 'Z':
		c := b[len(b)-len("Z07:00")]
		if ('0' <= c && c <= '9') || 10*(b[len(b)-5]-'0')+(b[len(b)-4]-'0') >= 24 {
			return nil, errors.New("time zone hour outside of 0 to 23")
		}
	}
	return append(b, '"'), nil
}

func appendStrings(b []byte, ss []string) []byte {
	if ss == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}

const hexDigits = "0123456789abcdef"

// appendString is encoding/json's string encoder with HTML escaping.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
