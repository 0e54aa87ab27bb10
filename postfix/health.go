package postfix

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// healthTimeout bounds a health probe; healthTTL is how long its answer
// stands: however often /healthz is asked, Postfix sees one connection
// in that time.
const (
	healthTimeout = 5 * time.Second
	healthTTL     = 5 * time.Second
)

// health is the last probe's answer.
type health struct {
	mu   sync.Mutex
	at   time.Time
	err  error
	done bool
}

// Health reports whether Postfix's reinjection smtpd greets: it connects,
// reads the greeting and says QUIT, as Postfix likes. An answer stands for
// healthTTL; callers meanwhile share it.
func (r *Reinjector) Health(ctx context.Context) error {
	r.health.mu.Lock()
	defer r.health.mu.Unlock()
	if r.health.done && time.Since(r.health.at) < healthTTL {
		return r.health.err
	}
	err := r.probe(ctx)
	r.health.at, r.health.err, r.health.done = time.Now(), err, true
	return err
}

// probe connects to the reinjection smtpd once.
func (r *Reinjector) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", r.Addr)
	if err != nil {
		return fmt.Errorf("reinjection port %s: %w", r.Addr, err)
	}
	if deadline, ok := ctx.Deadline(); ok {
		conn.SetDeadline(deadline)
	}
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.Quit(); err != nil {
		return fmt.Errorf("reinjection port %s: %w", r.Addr, err)
	}
	return nil
}
