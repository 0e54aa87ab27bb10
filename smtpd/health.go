package smtpd

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/textproto"
	"time"
)

// healthTimeout bounds each probe of a health check.
const healthTimeout = 5 * time.Second

// Health reports whether the filter's SMTP listener greets.
func (s *Server) Health(ctx context.Context) error {
	if err := Greets(ctx, s.ln.Addr().String()); err != nil {
		return fmt.Errorf("SMTP listener: %w", err)
	}
	return nil
}

// Greets reports whether the SMTP or LMTP server at addr greets with 220.
func Greets(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		conn.SetDeadline(deadline)
	}
	// Only the greeting: no command to count, nothing to log.
	code, _, err := textproto.NewReader(bufio.NewReader(conn)).ReadResponse(220)
	if err != nil {
		return fmt.Errorf("greeting %d: %w", code, err)
	}
	return nil
}
