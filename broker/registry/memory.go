package registry

import (
	"context"
)

// Memory is a fixed, in-memory Reader for tests of the broker core: it
// holds what it is given and never changes. The broker's registry is a
// Store: boltreg (one machine) or pgreg (replicas on PostgreSQL).
type Memory struct {
	consumers map[string]Consumer
	grants    map[string][]Grant // by consumer SIRET
}

// NewMemory returns a Memory holding consumers and grants.
func NewMemory(consumers []Consumer, grants []Grant) *Memory {
	m := &Memory{consumers: make(map[string]Consumer), grants: make(map[string][]Grant)}
	for _, c := range consumers {
		m.consumers[c.SIRET] = c
	}
	for _, g := range grants {
		m.grants[g.Consumer] = append(m.grants[g.Consumer], g)
	}
	return m
}

// Consumer implements Reader.
func (m *Memory) Consumer(_ context.Context, siret string) (Consumer, error) {
	c, ok := m.consumers[siret]
	if !ok {
		return Consumer{}, ErrNotFound
	}
	return c, nil
}

// Grants implements Reader.
func (m *Memory) Grants(_ context.Context, siret, service string) ([]Grant, error) {
	var out []Grant
	for _, g := range m.grants[siret] {
		if g.Service == service {
			out = append(out, g)
		}
	}
	return out, nil
}
