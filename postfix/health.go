package postfix

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/emersion/go-smtp"
)

// healthTimeout bounds a health probe.
const healthTimeout = 5 * time.Second

// Health reports whether Postfix's reinjection smtpd greets: it connects,
// reads the greeting and says QUIT, as Postfix likes.
func (r *Reinjector) Health(ctx context.Context) error {
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
