package identity

import "testing"

func TestNormaliseSerial(t *testing.T) {
	for in, want := range map[string]string{
		"1a:2B:03": "1a2b03",
		"00:1a:2b": "1a2b",
		"1A2B03":   "1a2b03",
		"zz":       "",
		"":         "",
		"-1a":      "",
	} {
		if got := NormaliseSerial(in); got != want {
			t.Errorf("NormaliseSerial(%q) = %q, want %q", in, got, want)
		}
	}
}
