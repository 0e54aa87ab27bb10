// Package smtpdtest provides an SMTP sink for tests: a real SMTP server on
// the loopback interface that stands in for Postfix's reinjection port.
package smtpdtest

import (
	"errors"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/emersion/go-smtp"
)

// Mode is how a Sink answers messages.
type Mode int

const (
	Accept      Mode = iota // 250 at the end of DATA
	TempFail                // 451 at the end of DATA
	PermFail                // 554 at the end of DATA
	DropMidData             // close the connection halfway through DATA
	RejectRcpt              // 550 for recipients whose local part is "unknown"
)

// Message is one message the sink accepted.
type Message struct {
	From string
	To   []string
	Opts smtp.MailOptions
	Data []byte
}

// Sink is an SMTP server that records what it accepts.
type Sink struct {
	Port int

	mu       sync.Mutex
	mode     Mode
	hold     chan struct{} // the next message's answer waits until it is closed
	arrived  chan struct{} // closed when that message has been read in full
	messages []Message
	server   *smtp.Server
	ln       net.Listener
	conns    []net.Conn // every connection accepted
	open     int        // connections not closed
}

// NewSink starts a sink on a free loopback port; it stops when the test ends.
func NewSink(t testing.TB, mode Mode) *Sink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Sink{Port: ln.Addr().(*net.TCPAddr).Port, mode: mode, ln: ln}
	s.server = smtp.NewServer(s)
	s.server.Domain = "sink.test"
	s.server.EnableSMTPUTF8 = true
	s.server.EnableDSN = true
	s.server.MaxLineLength = 0
	s.server.ErrorLog = nopLogger{}
	go s.server.Serve(countingListener{ln, s})
	t.Cleanup(s.Close)
	return s
}

// Hold makes the sink keep its answer to the next message until release
// is called. arrived is closed when that message has been read in full.
// The hold ends with the test at the latest.
func (s *Sink) Hold(t testing.TB) (arrived <-chan struct{}, release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	hold, a := make(chan struct{}), make(chan struct{})
	s.hold, s.arrived = hold, a
	release = sync.OnceFunc(func() { close(hold) })
	t.Cleanup(release)
	return a, release
}

// Addr returns the sink's host:port.
func (s *Sink) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

// SetMode changes how the sink answers from now on.
func (s *Sink) SetMode(m Mode) {
	s.mu.Lock()
	s.mode = m
	s.mu.Unlock()
}

// Messages returns what the sink accepted so far.
func (s *Sink) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.messages...)
}

// Close stops the sink; later connections are refused.
func (s *Sink) Close() {
	s.ln.Close()
	s.server.Close()
}

// Connections returns how many connections the sink has accepted.
func (s *Sink) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Open returns how many of the sink's connections are open: the server
// closes one when its client has closed it.
func (s *Sink) Open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open
}

// DropConnections closes every connection the sink has accepted, as a
// server does that times out idle clients.
func (s *Sink) DropConnections() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
}

// countingListener keeps the connections of a sink.
type countingListener struct {
	net.Listener
	s *Sink
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	l.s.conns = append(l.s.conns, c)
	l.s.open++
	return &trackedConn{Conn: c, s: l.s}, nil
}

// trackedConn counts its closing.
type trackedConn struct {
	net.Conn
	s    *Sink
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.s.mu.Lock()
		c.s.open--
		c.s.mu.Unlock()
	})
	return c.Conn.Close()
}

func (s *Sink) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &sinkSession{sink: s, conn: c}, nil
}

func (s *Sink) current() Mode {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mode
}

// sinkSession is one connection's transaction. go-smtp runs Data on a
// goroutine of its own for BDAT and may reset the session meanwhile: msg
// is guarded, and Data works on its own copy.
type sinkSession struct {
	sink    *Sink
	conn    *smtp.Conn
	mu      sync.Mutex
	msg     Message
	running chan struct{} // closed when the Data that runs returns
}

func (ss *sinkSession) Mail(from string, opts *smtp.MailOptions) error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.msg = Message{From: from}
	if opts != nil {
		ss.msg.Opts = *opts
	}
	return nil
}

func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if ss.sink.current() == RejectRcpt && len(to) > 8 && to[:8] == "unknown@" {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "User unknown"}
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.msg.To = append(ss.msg.To, to)
	return nil
}

func (ss *sinkSession) Data(r io.Reader) error {
	ss.mu.Lock()
	msg := ss.msg
	msg.To = slices.Clone(msg.To)
	running := make(chan struct{})
	ss.running = running
	ss.mu.Unlock()
	defer close(running)
	mode := ss.sink.current()
	if mode == DropMidData {
		io.ReadFull(r, make([]byte, 10))
		ss.conn.Conn().Close()
		return errors.New("dropped")
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.sink.mu.Lock()
	hold, arrived := ss.sink.hold, ss.sink.arrived
	ss.sink.hold, ss.sink.arrived = nil, nil
	ss.sink.mu.Unlock()
	if hold != nil {
		close(arrived)
		<-hold
	}
	switch mode {
	case TempFail:
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Sink is busy"}
	case PermFail:
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Sink refuses this"}
	}
	msg.Data = data
	ss.sink.mu.Lock()
	ss.sink.messages = append(ss.sink.messages, msg)
	ss.sink.mu.Unlock()
	return nil
}

// Reset waits for a Data that runs (BDAT, which go-smtp cuts off before
// Reset), so that the next transaction starts after it.
func (ss *sinkSession) Reset() {
	ss.mu.Lock()
	ss.msg = Message{}
	running := ss.running
	ss.running = nil
	ss.mu.Unlock()
	if running != nil {
		<-running
	}
}
func (ss *sinkSession) Logout() error { return nil }

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}
func (nopLogger) Println(...any)        {}
