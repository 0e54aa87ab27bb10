package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"filtermail/activation"
	"filtermail/smtpd"
)

// LMTP server bounds. Postfix sends a message as fast as it reads it from
// its queue; lines are at most 998 bytes (lmtp_line_length_limit).
const (
	lmtpReadTimeout  = 5 * time.Minute
	lmtpWriteTimeout = time.Minute
	// lmtpMaxLine bounds a command line. It is below the pieces in which
	// an LMTP connection hands go-smtp a longer line, so that go-smtp
	// refuses such a line before it could take a piece for a command
	// (see lmtpConn.nextCommand).
	lmtpMaxLine = 4000
	// MaxRecipients bounds the recipients of one LMTP transaction; Postfix
	// sends at most 50 (default_destination_recipient_limit).
	MaxRecipients = 1000
	// MaxConnections bounds the LMTP connections; Postfix opens up to 500
	// (the maxproc of lmtp-filtermail).
	MaxConnections = 1000
	// replyGrace is how long a stopping transport waits for the replies
	// of deliveries it cut off to be written.
	replyGrace = 5 * time.Second
	// slotWait is how long a recipient waits for a slot of its domain's.
	slotWait = time.Second
)

// Replies of the transport itself.
var (
	errBusy        = reply(421, smtp.EnhancedCode{4, 3, 2}, "Transport busy")
	errBusyRcpt    = reply(451, smtp.EnhancedCode{4, 3, 2}, "Transport busy")
	errStopping    = reply(421, smtp.EnhancedCode{4, 3, 2}, "Transport stopping")
	errNestedMail  = reply(503, smtp.EnhancedCode{5, 5, 1}, "Error: nested MAIL command")
	errReadFailure = reply(451, smtp.EnhancedCode{4, 3, 0}, "Error reading the message")
)

func (t *Transport) newServer() *smtp.Server {
	srv := smtp.NewServer(backend{t})
	srv.LMTP = true
	srv.Domain = t.o.Domain
	srv.ReadTimeout = lmtpReadTimeout
	srv.WriteTimeout = lmtpWriteTimeout
	srv.MaxLineLength = lmtpMaxLine
	srv.MaxRecipients = MaxRecipients
	srv.MaxMessageBytes = t.o.MaxMessageBytes
	srv.EnableSMTPUTF8 = true
	srv.ErrorLog = smtpd.PrivateLogger{Log: t.o.Log}
	return srv
}

// Serve answers LMTP on ln until Shutdown. At most MaxConnections are
// served at once; more wait to be accepted.
func (t *Transport) Serve(ln net.Listener) error {
	t.addr.Store(ln.Addr().String())
	err := t.server.Serve(t.conns.listen(activation.LimitListener(ln, MaxConnections), t))
	if errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops taking connections, closes those between transactions
// and lets the deliveries in flight finish. When ctx is done first, the
// deliveries still in flight end with 4xx replies (Postfix keeps those
// messages) and every connection is closed.
func (t *Transport) Shutdown(ctx context.Context) error {
	t.conns.drain()
	done := make(chan error, 1)
	go func() { done <- t.server.Shutdown(context.Background()) }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		// The deliveries in flight end now and their 4xx replies are
		// written; connections still open after a grace are closed.
		t.cancel()
		select {
		case err = <-done:
		case <-time.After(replyGrace):
			t.conns.closeAll()
			err = <-done
		}
		if err == nil || errors.Is(err, smtp.ErrServerClosed) {
			err = ctx.Err()
		}
	}
	t.cancel()
	<-t.sweep
	if errors.Is(err, smtp.ErrServerClosed) {
		err = nil
	}
	return err
}

// Health reports whether the transport takes mail: its LMTP listener
// greets.
func (t *Transport) Health(ctx context.Context) error {
	addr, _ := t.addr.Load().(string)
	if addr == "" || t.ctx.Err() != nil {
		return errors.New("LMTP listener: not serving")
	}
	if err := smtpd.Greets(ctx, addr); err != nil {
		return fmt.Errorf("LMTP listener: %w", err)
	}
	return nil
}

type backend struct{ t *Transport }

func (b backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	s := &session{t: b.t, conn: c}
	if !b.t.conns.bind(c.Conn(), s) {
		return nil, errStopping
	}
	b.t.o.Metrics.ConnectionOpened()
	return s, nil
}

// session is one LMTP connection.
type session struct {
	t    *Transport
	conn *smtp.Conn

	mu      sync.Mutex
	inTx    bool
	from    string
	utf8    bool
	to      []string
	domains []string // a delivery slot is held for each
}

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inTx {
		return errNestedMail
	}
	if s.t.slots.full() {
		s.t.o.Metrics.Busy(busyTotal)
		return errBusy
	}
	if opts != nil && opts.Size > s.t.budget.left() {
		s.t.o.Metrics.Busy(busyMemory)
		return errBusy
	}
	s.inTx, s.from = true, from
	s.utf8 = opts != nil && opts.UTF8
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	d := domainOf(to)
	if d == "" {
		return errBadAddress
	}
	s.mu.Lock()
	held := slices.Contains(s.domains, d)
	s.mu.Unlock()
	if !held {
		if reason, ok := s.t.dests.suspended(d); ok {
			s.t.o.Metrics.Suspended()
			return reply(451, smtp.EnhancedCode{4, 4, 1}, "Delivery to this domain suspended for a while: %s", reason)
		}
		limit := s.t.dests.limit(d, s.t.o.MaxPerDomain)
		if why := s.t.slots.takeWait(d, limit, slotWait); why != "" {
			s.t.o.Metrics.Busy(why)
			return errBusyRcpt
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !held {
		s.domains = append(s.domains, d)
	}
	s.to = append(s.to, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	return errors.New("transport: DATA without LMTP") // the server is LMTP: LMTPData is called
}

// LMTPData reads the message, delivers it and sets each recipient's
// reply.
func (s *session) LMTPData(r io.Reader, status smtp.StatusCollector) error {
	// Over DATA, the connection read the body (go-smtp's reader is then
	// empty); over BDAT, go-smtp did.
	msg, err := readMessage(r, s.t.budget)
	if lc, ok := s.conn.Conn().(*lmtpConn); ok {
		if b := lc.takeBody(); b != nil {
			if msg != nil {
				msg.release()
			}
			msg, err = b.msg, b.err
		}
	}
	switch {
	case errors.Is(err, errBudget):
		s.t.o.Metrics.Busy(busyMemory)
		return errBusyRcpt
	case errors.Is(err, smtp.ErrDataTooLarge):
		return err
	case err != nil:
		return errReadFailure
	}
	defer msg.release()
	s.mu.Lock()
	from, utf8, to := s.from, s.utf8, s.to
	s.mu.Unlock()
	for i, r := range s.t.deliver(from, utf8, to, msg) {
		status.SetStatus(to[i], r)
	}
	return nil
}

// Reset ends the transaction: the delivery slots are given back. While
// the transport stops, the connection is closed after it.
func (s *session) Reset() {
	s.mu.Lock()
	for _, d := range s.domains {
		s.t.slots.give(d)
	}
	s.inTx, s.from, s.utf8, s.to, s.domains = false, "", false, nil, nil
	s.mu.Unlock()
	if s.t.conns.draining() {
		// go-smtp holds its lock here: the connection itself is closed,
		// and go-smtp ends the session when its next read fails.
		s.conn.Conn().Close()
	}
}

func (s *session) Logout() error {
	s.Reset()
	s.t.o.Metrics.ConnectionClosed()
	return nil
}

// idle reports whether the session is between transactions.
func (s *session) idle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.inTx
}

// conns are the open LMTP connections and their sessions, so that a
// stopping transport can close those between transactions, and those
// that have not said LHLO yet.
type conns struct {
	mu       sync.Mutex
	open     map[net.Conn]*session // nil before LHLO
	stopping bool
}

// listen returns ln with its connections kept in c, as lmtpConns of t.
func (c *conns) listen(ln net.Listener, t *Transport) net.Listener {
	return &trackingListener{ln, c, t}
}

type trackingListener struct {
	net.Listener
	c *conns
	t *Transport
}

func (l *trackingListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &lmtpConn{Conn: conn, c: l.c, t: l.t}
	l.c.mu.Lock()
	defer l.c.mu.Unlock()
	if l.c.stopping {
		conn.Close() // go-smtp's greeting fails; it ends the connection
		return tc, nil
	}
	if l.c.open == nil {
		l.c.open = make(map[net.Conn]*session)
	}
	l.c.open[tc] = nil
	return tc, nil
}

// bind names the session of a connection; false when the transport is
// stopping.
func (c *conns) bind(conn net.Conn, s *session) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopping {
		return false
	}
	if _, ok := c.open[conn]; ok {
		c.open[conn] = s
	}
	return true
}

func (c *conns) draining() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopping
}

// drain refuses new sessions and closes the connections that are not in
// a transaction.
func (c *conns) drain() {
	c.mu.Lock()
	c.stopping = true
	var idle []net.Conn
	for conn, s := range c.open {
		if s == nil || s.idle() {
			idle = append(idle, conn)
		}
	}
	c.mu.Unlock()
	for _, conn := range idle {
		conn.Close()
	}
}

// closeAll closes every connection.
func (c *conns) closeAll() {
	c.mu.Lock()
	var all []net.Conn
	for conn := range c.open {
		all = append(all, conn)
	}
	c.mu.Unlock()
	for _, conn := range all {
		conn.Close()
	}
}
