package relaytest

import (
	"cmp"
	"crypto/tls"
	"net"
	"slices"
	"sync"
	"testing"
)

// Default replies of the SMTP relay.
const (
	defaultMailReply = "250 2.1.0 Ok"
	defaultRcptReply = "250 2.1.5 Ok"
	defaultDataReply = "250 2.0.0 Ok: queued"
)

// SMTPOptions configure an SMTP relay.
type SMTPOptions struct {
	Cert     *tls.Certificate // offered with STARTTLS; nil: no STARTTLS in the EHLO reply
	Greeting string           // raw greeting reply without the final CRLF; default "220 <host> ESMTP relaytest"
}

// Message is a message an SMTP relay accepted.
type Message struct {
	From    string   // MAIL FROM address without brackets ("" for <>)
	Params  string   // what followed MAIL FROM:<…> (e.g. " BODY=8BITMIME SIZE=123")
	To      []string // RCPT TO addresses the relay accepted with 2xx, in order
	Data    []byte   // the message as the client meant it: dot-unstuffed, CRLF kept, final ".\r\n" removed
	Helo    string   // the name given with the last EHLO or HELO
	TLS     bool     // the transaction ran after STARTTLS
	Resumed bool     // the TLS session was resumed
	Conn    int      // which TCP connection (1, 2, … in accept order) carried it
}

// SMTP is a fake relay's SMTP server on host:25. It is a plain line-based
// server, so that it can misbehave precisely. Its methods are safe for
// concurrent use, also while it serves connections.
//
// A reply set with RcptReply, MailReply or DataReply is raw SMTP: one line
// or several joined by CRLF ("451-4.3.0 first\r\n451 4.3.0 second"),
// without the final CRLF, which the relay adds. A reply starting with 2
// counts as success.
type SMTP struct {
	addr     string
	host     string
	greeting string
	config   *tls.Config // nil: no STARTTLS
	ln       net.Listener
	g        group
	stop     chan struct{} // closed when the relay closes
	once     sync.Once

	mu            sync.Mutex
	mailReply     string
	dataReply     string
	rcptReplies   map[string]string
	stallGreeting bool
	stallData     bool
	messages      []Message
	transactions  int
	resets        int
}

// StartSMTP listens on host:25 and serves SMTP there until the test ends.
// If the port cannot be bound, the test fails.
//
// The relay greets, answers EHLO with PIPELINING, 8BITMIME, SMTPUTF8, SIZE,
// ENHANCEDSTATUSCODES and, with a certificate and before TLS, STARTTLS, and
// takes any number of transactions per connection. Unless told otherwise
// it answers MAIL "250 2.1.0 Ok", RCPT "250 2.1.5 Ok", DATA "354 …", the
// end of data "250 2.0.0 Ok: queued", RSET and NOOP 250 and QUIT 221.
// After STARTTLS the client starts over with EHLO; MAIL before it gets 503.
// A command line over 4 KiB gets 500, data over 64 MiB 552, and a read or
// write that takes over two minutes ends the connection.
func StartSMTP(t testing.TB, host string, o SMTPOptions) *SMTP {
	t.Helper()
	addr := net.JoinHostPort(host, "25")
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("relaytest: SMTP relay on %s: %v", addr, err)
	}
	s := &SMTP{
		addr:        addr,
		host:        host,
		greeting:    o.Greeting,
		ln:          ln,
		stop:        make(chan struct{}),
		mailReply:   defaultMailReply,
		dataReply:   defaultDataReply,
		rcptReplies: map[string]string{},
	}
	if s.greeting == "" {
		s.greeting = "220 " + host + " ESMTP relaytest"
	}
	if o.Cert != nil {
		s.config = &tls.Config{Certificates: []tls.Certificate{*o.Cert}}
	}
	s.g.start(s.acceptLoop)
	t.Cleanup(s.Close)
	return s
}

// Addr returns the address the relay listens on, host:25.
func (s *SMTP) Addr() string { return s.addr }

// RcptReply sets the reply to RCPT TO:<rcpt> (the exact address) in later
// transactions; "" restores the default.
func (s *SMTP) RcptReply(rcpt, reply string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if reply == "" {
		delete(s.rcptReplies, rcpt)
		return
	}
	s.rcptReplies[rcpt] = reply
}

// MailReply sets the reply to later MAIL commands; "" restores the default.
func (s *SMTP) MailReply(reply string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mailReply = cmp.Or(reply, defaultMailReply)
}

// DataReply sets the reply after the final dot of later messages; ""
// restores the default. It ends a StallData.
func (s *SMTP) DataReply(reply string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dataReply = cmp.Or(reply, defaultDataReply)
	s.stallData = false
}

// StallGreeting makes the relay accept later connections and never greet.
func (s *SMTP) StallGreeting() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stallGreeting = true
}

// StallData makes the relay, in transactions whose DATA comes later, read
// the message after 354 and then never answer, until DataReply is called
// or the relay closes.
func (s *SMTP) StallData() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stallData = true
}

// Messages returns the messages accepted so far (end-of-data reply 2xx), in
// the order they were accepted.
func (s *SMTP) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Message, len(s.messages))
	for i, m := range s.messages {
		m.To = slices.Clone(m.To)
		m.Data = slices.Clone(m.Data)
		out[i] = m
	}
	return out
}

// Transactions returns how many MAIL commands the relay received.
func (s *SMTP) Transactions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.transactions
}

// Connections returns how many TCP connections the relay accepted.
func (s *SMTP) Connections() int { return s.g.connections() }

// Resets returns how many RSET commands the relay received.
func (s *SMTP) Resets() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.resets
}

// Close stops the relay now: its port is closed, its connections too. It
// returns when everything the relay ran has ended. Close may be called
// more than once.
func (s *SMTP) Close() {
	s.once.Do(func() {
		s.g.close()
		s.ln.Close()
		close(s.stop)
	})
	s.g.wait()
}

// acceptLoop accepts connections until the listener closes and serves each
// in a goroutine of its own.
func (s *SMTP) acceptLoop() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		tc, ok := s.g.accept(c)
		if !ok {
			continue
		}
		s.mu.Lock()
		stall := s.stallGreeting
		s.mu.Unlock()
		if stall {
			continue // held by the group until the relay closes
		}
		if !s.g.start(func() { s.serve(tc) }) {
			tc.Close()
		}
	}
}
