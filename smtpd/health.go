package smtpd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"time"

	"github.com/emersion/go-smtp"
)

// healthTimeout bounds each probe of a health check.
const healthTimeout = 5 * time.Second

// Health reports whether the filter's SMTP listener greets and Postfix's
// reinjection port answers. The error says which does not.
func (s *Server) Health(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	var errs []error
	if err := probe(ctx, s.ln.Addr().String(), false); err != nil {
		errs = append(errs, fmt.Errorf("SMTP listener: %w", err))
	}
	if err := probe(ctx, s.reinject.addr, true); err != nil {
		errs = append(errs, fmt.Errorf("reinjection port %s: %w", s.reinject.addr, err))
	}
	return errors.Join(errs...)
}

// probe connects to an SMTP server and reads its greeting. With quit, it
// says QUIT before it leaves, as Postfix likes.
func probe(ctx context.Context, addr string, quit bool) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	if deadline, ok := ctx.Deadline(); ok {
		conn.SetDeadline(deadline)
	}
	if quit {
		c := smtp.NewClient(conn)
		defer c.Close()
		return c.Quit()
	}
	// Only the greeting: no command to count, nothing to log.
	defer conn.Close()
	code, _, err := textproto.NewReader(bufio.NewReader(conn)).ReadResponse(220)
	if err != nil {
		return fmt.Errorf("greeting %d: %w", code, err)
	}
	return nil
}
