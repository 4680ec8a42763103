package fastvalid

import (
	"fmt"
	"time"

	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Validator checks messages with the generated Go checks and falls back
// to protovalidate for the others; it satisfies protovalidate.Validator.
type Validator struct {
	fallback protovalidate.Validator
	nowFn    func() time.Time
}

var _ protovalidate.Validator = (*Validator)(nil)

// Option configures New.
type Option func(*options)

type options struct {
	nowFn func() *timestamppb.Timestamp
}

// WithNowFunc sets the clock of the rules that compare with the present
// (a birth date not in the future), for the Go checks and the fallback
// alike, as protovalidate.WithNowFunc does: tests inject theirs.
func WithNowFunc(fn func() *timestamppb.Timestamp) Option {
	return func(o *options) { o.nowFn = fn }
}

// New builds a Validator: a drop-in replacement of protovalidate.New().
func New(opts ...Option) (*Validator, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	var pvOpts []protovalidate.ValidatorOption
	v := &Validator{}
	if o.nowFn != nil {
		pvOpts = append(pvOpts, protovalidate.WithNowFunc(o.nowFn))
		fn := o.nowFn
		v.nowFn = func() time.Time { return fn().AsTime() }
	}
	fb, err := protovalidate.New(pvOpts...)
	if err != nil {
		return nil, fmt.Errorf("fastvalid: fallback validator: %w", err)
	}
	v.fallback = fb
	return v, nil
}

// Validate checks msg. It returns nil, a *protovalidate.ValidationError
// with protovalidate's violations for the same input, or the fallback's
// error. Calls with options (fail fast, filters…) go to protovalidate,
// which alone interprets them.
func (v *Validator) Validate(msg proto.Message, options ...protovalidate.ValidationOption) error {
	if msg == nil {
		return nil
	}
	if len(options) > 0 {
		return v.fallback.Validate(msg, options...)
	}
	// A direct call (not through a func value) keeps s on the stack.
	s := state{nowFn: v.nowFn}
	if !checkGenerated(msg, &s) {
		return v.fallback.Validate(msg)
	}
	return s.result()
}
