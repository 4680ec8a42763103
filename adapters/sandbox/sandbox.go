package sandbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/relais-broker/relais/broker/catalog"
	"github.com/relais-broker/relais/broker/minimise"
	"github.com/relais-broker/relais/broker/source"
	"github.com/relais-broker/relais/broker/subject"
	commonv1 "github.com/relais-broker/relais/proto/relais/common/v1"
)

// Provider is what sandbox responses name as their provider, so that no
// sandbox answer can pass for a real administration's.
const Provider = "Bac à sable Relais (données fictives)"

// Validity is how long a sandbox answer stays valid after it is produced,
// stated in every response's source metadata.
const Validity = 24 * time.Hour

// RetryAfter is what an unavailable sandbox source asks callers to wait.
const RetryAfter = 30 * time.Second

// Options configure an Adapter.
type Options struct {
	// SourceID names the source in response metadata; required.
	SourceID string
	// Catalog is the catalogue the data set was loaded for; defaults to
	// catalog.Default().
	Catalog *catalog.Catalog
	// Clock stamps responses; defaults to time.Now.
	Clock func() time.Time
}

// Adapter answers every typed service from a Dataset.
type Adapter struct {
	data *Dataset
	opts Options
}

var _ source.Adapter = (*Adapter)(nil)

// New returns an adapter over data.
func New(data *Dataset, opts Options) *Adapter {
	if opts.Catalog == nil {
		opts.Catalog = catalog.Default()
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.SourceID == "" {
		opts.SourceID = "sandbox"
	}
	return &Adapter{data: data, opts: opts}
}

// Fetch looks the subject up the way a source would and answers its
// record, holding only the fields req.Scopes allow.
func (a *Adapter) Fetch(ctx context.Context, req source.Request) (proto.Message, error) {
	m, ok := a.opts.Catalog.Method(req.Method)
	if !ok {
		return nil, fmt.Errorf("sandbox: unknown method %s", req.Method)
	}
	c, err := a.data.lookup(req.Input)
	if err != nil {
		return nil, err
	}
	switch c.Behaviour {
	case BehaveUnavailable:
		return nil, &source.RetryableError{RetryAfter: RetryAfter, Cause: errors.New("sandbox: this subject is configured as unavailable")}
	case BehaveTimeout:
		<-ctx.Done()
		return nil, fmt.Errorf("%w: %w", source.ErrTimeout, ctx.Err())
	}
	record, ok := c.Records[m.Service]
	if !ok {
		return nil, source.ErrSubjectNotFound
	}
	resp := proto.Clone(record)
	a.fillIdentity(resp, c)
	now := a.opts.Clock()
	meta := &commonv1.SourceMetadata{SourceId: a.opts.SourceID, Provider: Provider, ProducedAt: timestamppb.New(now), ValidUntil: timestamppb.New(now.Add(Validity))}
	if c.Behaviour == BehaveInvalidResponse {
		meta = &commonv1.SourceMetadata{} // breaks the required source_id, provider and produced_at
	}
	source.SetMetadata(resp, meta)
	minimise.Apply(m, resp, req.Scopes)
	return resp, nil
}

// lookup finds the one citizen a request designates: by a domain
// identifier when the request carries one, else by civil identity.
func (d *Dataset) lookup(in proto.Message) (*Citizen, error) {
	des := subject.Designate(in)
	switch {
	case des.Kind == subject.INE:
		return found(d.byINE[des.Value])
	case des.Kind == subject.FranceTravailID:
		return found(d.byFTID[des.Value])
	case des.Identity == nil:
		return nil, fmt.Errorf("%w: the request carries no subject", source.ErrNotIdentifiable)
	}
	q := keyOf(des.Identity)
	var match *Citizen
	for _, c := range d.citizens {
		if !q.matches(c.key) {
			continue
		}
		if match != nil {
			return nil, source.ErrNotIdentifiable
		}
		match = c
	}
	return found(match)
}

func found(c *Citizen) (*Citizen, error) {
	if c == nil {
		return nil, source.ErrSubjectNotFound
	}
	return c, nil
}

// fillIdentity copies the citizen's civil identity into a response's
// "identity" message (student and job-seeker services echo the identity
// the source holds), field by field with matching names.
func (a *Adapter) fillIdentity(resp proto.Message, c *Citizen) {
	r := resp.ProtoReflect()
	f := r.Descriptor().Fields().ByName("identity")
	if f == nil || f.Message() == nil {
		return
	}
	dst := r.Mutable(f).Message()
	src := c.Identity.ProtoReflect()
	srcFields := src.Descriptor().Fields()
	dstFields := dst.Descriptor().Fields()
	for i := 0; i < dstFields.Len(); i++ {
		df := dstFields.Get(i)
		sf := srcFields.ByName(df.Name())
		if sf == nil || sf.Kind() != df.Kind() || sf.Cardinality() != df.Cardinality() || !src.Has(sf) {
			continue
		}
		if df.Kind() == protoreflect.EnumKind && sf.Enum().FullName() != df.Enum().FullName() {
			continue
		}
		if df.IsList() {
			from, to := src.Get(sf).List(), dst.Mutable(df).List()
			for j := 0; j < from.Len(); j++ {
				to.Append(from.Get(j))
			}
			continue
		}
		dst.Set(df, src.Get(sf))
	}
}
