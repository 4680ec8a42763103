package registry

import (
	"context"
	"sync"
)

// Memory is an in-memory Reader.
//
// PLACEHOLDER: it exists so that the broker core and dev mode run before
// the persistent bbolt registry with its admin API lands (the registry
// issue). It holds what it is given at start-up and nothing survives a
// restart. Do not use it in production.
type Memory struct {
	mu        sync.RWMutex
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

// SetStatus changes a consumer's status; it returns ErrNotFound for an
// unknown consumer.
func (m *Memory) SetStatus(siret string, s Status) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.consumers[siret]
	if !ok {
		return ErrNotFound
	}
	c.Status = s
	m.consumers[siret] = c
	return nil
}

// Consumer implements Reader.
func (m *Memory) Consumer(_ context.Context, siret string) (Consumer, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	c, ok := m.consumers[siret]
	if !ok {
		return Consumer{}, ErrNotFound
	}
	return c, nil
}

// Grants implements Reader.
func (m *Memory) Grants(_ context.Context, siret, service string) ([]Grant, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []Grant
	for _, g := range m.grants[siret] {
		if g.Service == service {
			out = append(out, g)
		}
	}
	return out, nil
}
