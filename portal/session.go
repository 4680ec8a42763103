package portal

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"sync"
	"time"
)

// Session is what the portal keeps of a logged-in citizen: the pseudonym
// and the CSRF token of its forms. Never the identity, never a token.
type Session struct {
	Pseudonym string
	// CSRF is the synchronizer token every form of the session carries.
	CSRF string
	// Created and LastSeen are set by the store.
	Created, LastSeen time.Time
}

// PendingLogin is what the portal keeps between the redirect to the
// provider and the callback: bound to the browser by its own short-lived
// cookie, used once, never turned into a session.
type PendingLogin struct {
	State, Nonce, Verifier string
	Created                time.Time
}

// Errors of a SessionStore.
var (
	// ErrNoSession: unknown, expired or deleted (the caller shows the login page).
	ErrNoSession = errors.New("portal: no such session")
	// ErrStoreFull: the store holds as many sessions or logins as it may.
	ErrStoreFull = errors.New("portal: session store is full")
)

// SessionStore keeps sessions and pending logins server-side. The store
// picks the ids (256 bits from crypto/rand): a caller can never choose
// one, so a session cannot be fixed by an attacker. Implementations must
// be safe for concurrent use and apply their timeouts on every read.
type SessionStore interface {
	// NewSession stores s under a fresh id and returns the id.
	NewSession(ctx context.Context, s Session) (string, error)
	// Session returns the live session with this id, refreshing its idle
	// timer, or ErrNoSession.
	Session(ctx context.Context, id string) (Session, error)
	// DeleteSession ends the session (no error when it is already gone).
	DeleteSession(ctx context.Context, id string) error
	// NewLogin stores l under a fresh id and returns the id.
	NewLogin(ctx context.Context, l PendingLogin) (string, error)
	// TakeLogin returns and deletes the pending login, or ErrNoSession:
	// a callback can be answered once.
	TakeLogin(ctx context.Context, id string) (PendingLogin, error)
}

// Session timeouts of the memory store, unless MemoryOptions say otherwise.
const (
	DefaultIdleTimeout     = 15 * time.Minute
	DefaultAbsoluteTimeout = time.Hour
	DefaultLoginTimeout    = 10 * time.Minute
	DefaultMaxSessions     = 10000
)

// MemoryOptions configure a MemoryStore; zero fields take the defaults.
type MemoryOptions struct {
	IdleTimeout, AbsoluteTimeout, LoginTimeout time.Duration
	// MaxSessions bounds the sessions, and separately the pending logins.
	MaxSessions int
	// Now is the clock of the timeouts (time.Now when nil).
	Now func() time.Time
}

// MemoryStore is the SessionStore of one portal process: bounded, with
// idle and absolute timeouts. Ids are kept hashed (SHA-256), so that the
// process's memory holds no cookie value.
type MemoryStore struct {
	o        MemoryOptions
	mu       sync.Mutex
	sessions map[[32]byte]Session
	logins   map[[32]byte]PendingLogin
}

var _ SessionStore = (*MemoryStore)(nil)

// NewMemoryStore returns an empty store.
func NewMemoryStore(o MemoryOptions) *MemoryStore {
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.AbsoluteTimeout <= 0 {
		o.AbsoluteTimeout = DefaultAbsoluteTimeout
	}
	if o.LoginTimeout <= 0 {
		o.LoginTimeout = DefaultLoginTimeout
	}
	if o.MaxSessions <= 0 {
		o.MaxSessions = DefaultMaxSessions
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &MemoryStore{o: o, sessions: map[[32]byte]Session{}, logins: map[[32]byte]PendingLogin{}}
}

// newID returns 256 random bits, base64url without padding (43 chars).
func newID() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// key hashes an id; an id that is not of the shape newID makes is refused
// before it reaches the maps.
func key(id string) ([32]byte, bool) {
	if len(id) != 43 {
		return [32]byte{}, false
	}
	if _, err := base64.RawURLEncoding.DecodeString(id); err != nil {
		return [32]byte{}, false
	}
	return sha256.Sum256([]byte(id)), true
}

func (m *MemoryStore) expired(s Session, now time.Time) bool {
	return now.Sub(s.LastSeen) >= m.o.IdleTimeout || now.Sub(s.Created) >= m.o.AbsoluteTimeout
}

// sweep drops what has expired; m.mu is held.
func (m *MemoryStore) sweep(now time.Time) {
	for k, s := range m.sessions {
		if m.expired(s, now) {
			delete(m.sessions, k)
		}
	}
	for k, l := range m.logins {
		if now.Sub(l.Created) >= m.o.LoginTimeout {
			delete(m.logins, k)
		}
	}
}

// NewSession implements SessionStore.
func (m *MemoryStore) NewSession(_ context.Context, s Session) (string, error) {
	id, err := newID()
	if err != nil {
		return "", err
	}
	k, _ := key(id)
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.o.Now()
	if len(m.sessions) >= m.o.MaxSessions {
		m.sweep(now)
		if len(m.sessions) >= m.o.MaxSessions {
			return "", ErrStoreFull
		}
	}
	s.Created, s.LastSeen = now, now
	m.sessions[k] = s
	return id, nil
}

// Session implements SessionStore.
func (m *MemoryStore) Session(_ context.Context, id string) (Session, error) {
	k, ok := key(id)
	if !ok {
		return Session{}, ErrNoSession
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sessions[k]
	if !ok {
		return Session{}, ErrNoSession
	}
	now := m.o.Now()
	if m.expired(s, now) {
		delete(m.sessions, k)
		return Session{}, ErrNoSession
	}
	s.LastSeen = now
	m.sessions[k] = s
	return s, nil
}

// DeleteSession implements SessionStore.
func (m *MemoryStore) DeleteSession(_ context.Context, id string) error {
	if k, ok := key(id); ok {
		m.mu.Lock()
		delete(m.sessions, k)
		m.mu.Unlock()
	}
	return nil
}

// NewLogin implements SessionStore.
func (m *MemoryStore) NewLogin(_ context.Context, l PendingLogin) (string, error) {
	id, err := newID()
	if err != nil {
		return "", err
	}
	k, _ := key(id)
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.o.Now()
	if len(m.logins) >= m.o.MaxSessions {
		m.sweep(now)
		if len(m.logins) >= m.o.MaxSessions {
			return "", ErrStoreFull
		}
	}
	l.Created = now
	m.logins[k] = l
	return id, nil
}

// TakeLogin implements SessionStore.
func (m *MemoryStore) TakeLogin(_ context.Context, id string) (PendingLogin, error) {
	k, ok := key(id)
	if !ok {
		return PendingLogin{}, ErrNoSession
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.logins[k]
	if !ok {
		return PendingLogin{}, ErrNoSession
	}
	delete(m.logins, k)
	if m.o.Now().Sub(l.Created) >= m.o.LoginTimeout {
		return PendingLogin{}, ErrNoSession
	}
	return l, nil
}

// Len returns the number of sessions and pending logins held (expired
// ones included until swept), for tests and metrics.
func (m *MemoryStore) Len() (sessions, logins int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.sessions), len(m.logins)
}
