package citizen

import (
	"errors"
	"io"
	"net/http"
)

// errTooLarge is the error of an answer over MaxResponseBytes.
var errTooLarge = errors.New("provider answer exceeds the size bound")

// limitedTransport bounds every response body it returns, including those
// go-oidc reads itself (discovery, key set), so that a provider cannot
// make the broker read without end.
type limitedTransport struct {
	next  http.RoundTripper
	limit int64
}

// RoundTrip refuses a declared length over the bound and bounds the rest.
func (t limitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.ContentLength > t.limit {
		resp.Body.Close()
		return nil, errTooLarge
	}
	resp.Body = &limitedBody{rc: resp.Body, left: t.limit}
	return resp, nil
}

// limitedBody fails the read that goes past the bound, rather than
// silently truncating (a truncated JWT or JSON would fail later, less
// clearly).
type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

// Read reads within the bound and fails past it.
func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One more byte tells the end of the body from an overflow.
		var one [1]byte
		n, err := b.rc.Read(one[:])
		if n > 0 {
			return 0, errTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

// Close closes the underlying body.
func (b *limitedBody) Close() error { return b.rc.Close() }

// readAll reads a bounded response body.
func readAll(resp *http.Response) ([]byte, error) {
	return io.ReadAll(resp.Body)
}
