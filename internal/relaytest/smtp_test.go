package relaytest

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"filtermail/internal/testnet"

	"github.com/emersion/go-smtp"
)

// smtpClient connects to s, starts TLS with config unless it is nil, and
// says EHLO; the connection is closed when the test ends.
func smtpClient(t *testing.T, s *SMTP, config *tls.Config) *smtp.Client {
	t.Helper()
	conn, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClient(conn)
	if config != nil {
		if c, err = smtp.NewClientStartTLS(conn, config); err != nil {
			t.Fatalf("STARTTLS: %v", err)
		}
	}
	c.CommandTimeout = 10 * time.Second
	c.SubmissionTimeout = 10 * time.Second
	t.Cleanup(func() { c.Close() })
	if err := c.Hello("client.example"); err != nil {
		t.Fatalf("EHLO: %v", err)
	}
	return c
}

// send runs a transaction on c and returns the error of the first step
// that failed, and which.
func send(c *smtp.Client, from string, to []string, data string) (string, error) {
	if err := c.Mail(from, &smtp.MailOptions{Body: smtp.Body8BitMIME, Size: int64(len(data))}); err != nil {
		return "MAIL", err
	}
	for _, rcpt := range to {
		if err := c.Rcpt(rcpt, nil); err != nil {
			return "RCPT " + rcpt, err
		}
	}
	w, err := c.Data()
	if err != nil {
		return "DATA", err
	}
	if _, err := w.Write([]byte(data)); err != nil {
		return "data", err
	}
	if err := w.Close(); err != nil {
		return "end of data", err
	}
	return "", nil
}

// smtpCode returns the reply code of an SMTP error, or 0.
func smtpCode(err error) int {
	if e, ok := errors.AsType[*smtp.SMTPError](err); ok {
		return e.Code
	}
	return 0
}

func TestSMTPDeliverSTARTTLS(t *testing.T) {
	host := testnet.Host(t)
	cert := certificate(t, "mx.relay.example")
	s := StartSMTP(t, host, SMTPOptions{Cert: &cert})
	plain := smtpClient(t, s, nil)
	for _, ext := range []string{"PIPELINING", "8BITMIME", "SMTPUTF8", "STARTTLS", "ENHANCEDSTATUSCODES"} {
		if ok, _ := plain.Extension(ext); !ok {
			t.Errorf("EHLO reply without %s", ext)
		}
	}
	if size, ok := plain.MaxMessageSize(); !ok || size != 52428800 {
		t.Errorf("SIZE %d, %v; want 52428800", size, ok)
	}
	plain.Quit()
	c := smtpClient(t, s, &tls.Config{RootCAs: ca.Pool, ServerName: "mx.relay.example"})
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Error("STARTTLS offered in TLS")
	}
	data := "From: alice@example.org\r\nSubject: hi\r\n\r\nhello\r\n"
	if step, err := send(c, "alice@example.org", []string{"bob@relay.example", "carol@relay.example"}, data); err != nil {
		t.Fatalf("%s: %v", step, err)
	}
	if err := c.Quit(); err != nil {
		t.Errorf("QUIT: %v", err)
	}
	msgs := s.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if m.From != "alice@example.org" || !slices.Equal(m.To, []string{"bob@relay.example", "carol@relay.example"}) ||
		string(m.Data) != data || !m.TLS || m.Resumed || m.Conn != 2 || m.Helo != "client.example" {
		t.Errorf("message %+v", m)
	}
	if want := " BODY=8BITMIME SIZE=" + strconv.Itoa(len(data)); m.Params != want {
		t.Errorf("MAIL parameters %q, want %q", m.Params, want)
	}
	if n := s.Transactions(); n != 1 {
		t.Errorf("%d transactions, want 1", n)
	}
}

func TestSMTPResumption(t *testing.T) {
	host := testnet.Host(t)
	cert := certificate(t, host)
	s := StartSMTP(t, host, SMTPOptions{Cert: &cert})
	config := &tls.Config{RootCAs: ca.Pool, ServerName: host, ClientSessionCache: tls.NewLRUClientSessionCache(0)}
	for range 2 {
		c := smtpClient(t, s, config)
		if step, err := send(c, "", []string{"bob@relay.example"}, "x\r\n"); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		c.Quit()
	}
	msgs := s.Messages()
	if len(msgs) != 2 || msgs[0].Resumed || !msgs[1].Resumed || msgs[0].Conn != 1 || msgs[1].Conn != 2 || msgs[0].From != "" {
		t.Errorf("messages %+v, want a new TLS session on connection 1, resumed on 2", msgs)
	}
}

func TestSMTPRcptRefused(t *testing.T) {
	host := testnet.Host(t)
	s := StartSMTP(t, host, SMTPOptions{})
	s.RcptReply("bob@relay.example", "550 5.1.1 No such user")
	c := smtpClient(t, s, nil)
	if err := c.Mail("alice@example.org", nil); err != nil {
		t.Fatal(err)
	}
	err := c.Rcpt("bob@relay.example", nil)
	if e, ok := errors.AsType[*smtp.SMTPError](err); !ok || e.Code != 550 || e.Message != "No such user" {
		t.Errorf("RCPT of a refused recipient: %v", err)
	}
	if err := c.Rcpt("carol@relay.example", nil); err != nil {
		t.Errorf("RCPT of an accepted recipient: %v", err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("x\r\n"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if msgs := s.Messages(); len(msgs) != 1 || !slices.Equal(msgs[0].To, []string{"carol@relay.example"}) {
		t.Errorf("messages %+v, want one to carol", msgs)
	}
}

func TestSMTPReplies(t *testing.T) {
	host := testnet.Host(t)
	s := StartSMTP(t, host, SMTPOptions{})
	c := smtpClient(t, s, nil)

	s.DataReply("451-4.3.0 first\r\n451 4.3.0 second")
	step, err := send(c, "alice@example.org", []string{"bob@relay.example"}, "x\r\n")
	if e, ok := errors.AsType[*smtp.SMTPError](err); step != "end of data" || !ok || e.Code != 451 || e.Message != "first\nsecond" {
		t.Errorf("multi-line reply to the data: %s: %#v", step, err)
	}
	if n := len(s.Messages()); n != 0 {
		t.Errorf("%d messages recorded after a 451, want 0", n)
	}

	s.MailReply("421 4.3.0 Busy")
	if step, err := send(c, "alice@example.org", nil, ""); step != "MAIL" || smtpCode(err) != 421 {
		t.Errorf("MAIL with MailReply 421: %s: %v", step, err)
	}
	s.MailReply("")
	s.DataReply("")
	if step, err := send(c, "alice@example.org", []string{"bob@relay.example"}, "x\r\n"); err != nil {
		t.Errorf("with the default replies again: %s: %v", step, err)
	}
	if n := len(s.Messages()); n != 1 {
		t.Errorf("%d messages, want 1", n)
	}
	if n := s.Transactions(); n != 3 {
		t.Errorf("%d transactions, want 3", n)
	}
}

func TestSMTPTwoTransactions(t *testing.T) {
	host := testnet.Host(t)
	cert := certificate(t, host)
	s := StartSMTP(t, host, SMTPOptions{Cert: &cert})
	c := smtpClient(t, s, &tls.Config{RootCAs: ca.Pool, ServerName: host})
	if step, err := send(c, "alice@example.org", []string{"bob@relay.example"}, "one\r\n"); err != nil {
		t.Fatalf("%s: %v", step, err)
	}
	if err := c.Reset(); err != nil {
		t.Fatalf("RSET: %v", err)
	}
	if step, err := send(c, "dave@example.org", []string{"erin@relay.example"}, "two\r\n"); err != nil {
		t.Fatalf("%s: %v", step, err)
	}
	msgs := s.Messages()
	if len(msgs) != 2 || msgs[0].Conn != msgs[1].Conn || string(msgs[0].Data) != "one\r\n" ||
		string(msgs[1].Data) != "two\r\n" || msgs[1].From != "dave@example.org" || !msgs[1].TLS {
		t.Errorf("messages %+v", msgs)
	}
	if n := s.Resets(); n != 1 {
		t.Errorf("%d resets, want 1", n)
	}
	if n := s.Connections(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

func TestSMTPNoSTARTTLS(t *testing.T) {
	host := testnet.Host(t)
	s := StartSMTP(t, host, SMTPOptions{})
	c := smtpClient(t, s, nil)
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Error("STARTTLS offered without a certificate")
	}
	if step, err := send(c, "alice@example.org", []string{"bob@relay.example"}, "x\r\n"); err != nil {
		t.Fatalf("%s: %v", step, err)
	}
	if msgs := s.Messages(); len(msgs) != 1 || msgs[0].TLS {
		t.Errorf("messages %+v, want one without TLS", msgs)
	}
}

func TestSMTPDotStuffing(t *testing.T) {
	host := testnet.Host(t)
	s := StartSMTP(t, host, SMTPOptions{})
	c := smtpClient(t, s, nil)
	data := ".x\r\n..\r\n.\r\nend\r\n"
	if step, err := send(c, "alice@example.org", []string{"bob@relay.example"}, data); err != nil {
		t.Fatalf("%s: %v", step, err)
	}
	if msgs := s.Messages(); len(msgs) != 1 || string(msgs[0].Data) != data {
		t.Errorf("messages %+v, want data %q", msgs, data)
	}
}

// rawConn is a plain-text SMTP conversation for tests.
type rawConn struct {
	t  *testing.T
	c  net.Conn
	tp *textproto.Conn
}

// dialRaw connects to s and reads the greeting.
func dialRaw(t *testing.T, s *SMTP) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := &rawConn{t: t, c: c, tp: textproto.NewConn(c)}
	r.expect(220)
	return r
}

// send writes lines as they are.
func (r *rawConn) send(lines string) {
	r.t.Helper()
	if _, err := r.c.Write([]byte(lines)); err != nil {
		r.t.Fatal(err)
	}
}

// expect reads a reply and checks its code.
func (r *rawConn) expect(code int) string {
	r.t.Helper()
	_, msg, err := r.tp.ReadResponse(code)
	if err != nil {
		r.t.Fatalf("want %d: %v", code, err)
	}
	return msg
}

func TestSMTPRaw(t *testing.T) {
	host := testnet.Host(t)
	s := StartSMTP(t, host, SMTPOptions{})
	r := dialRaw(t, s)

	r.send("MAIL FROM:<a@example.org>\r\n")
	r.expect(503) // no EHLO
	r.send("EHLO\r\n")
	r.expect(501)
	r.send("HELO client.example\r\n")
	r.expect(250)
	r.send(strings.Repeat("x", 5000) + "\r\n")
	r.expect(500)
	r.send("\r\n\x00\xff\r\nMAIL\r\nMAIL FROM\r\nMAIL FROM:<unclosed\r\nRCPT TO:<b@x>\r\nDATA\r\nSTARTTLS\r\nVRFY x\r\n")
	for _, code := range []int{500, 502, 501, 501, 501, 503, 503, 502, 502} {
		r.expect(code)
	}
	// Pipelined, the postmaster address in any case, stuffed dots, a bare LF line.
	r.send("mail from: <> SIZE=10\r\nrcpt to:<Postmaster>\r\nrcpt To:<x@relay.example>\r\ndata\r\n" +
		"..x\r\n...\r\nbare\n.\r\n")
	r.expect(250)
	r.expect(250)
	r.expect(250)
	r.expect(354)
	r.expect(250)
	r.send("MAIL FROM:<a@example.org>\r\nMAIL FROM:<a@example.org>\r\nDATA\r\nRSET\r\nNOOP\r\n")
	r.expect(250)
	r.expect(503) // nested MAIL
	r.expect(554) // no recipients
	r.expect(250)
	r.expect(250)
	r.send("QUIT\r\n")
	r.expect(221)

	msgs := s.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if m.From != "" || m.Params != " SIZE=10" || !slices.Equal(m.To, []string{"Postmaster", "x@relay.example"}) ||
		string(m.Data) != ".x\r\n..\r\nbare\n" || m.Helo != "client.example" || m.TLS {
		t.Errorf("message %+v", m)
	}
	if n := s.Transactions(); n != 7 {
		t.Errorf("%d transactions, want 7", n)
	}
}

func TestSMTPSTARTTLSStartsOver(t *testing.T) {
	host := testnet.Host(t)
	cert := certificate(t, host)
	s := StartSMTP(t, host, SMTPOptions{Cert: &cert, Greeting: "220-" + host + " first\r\n220 second"})
	r := dialRaw(t, s)
	r.send("EHLO client.example\r\nSTARTTLS now\r\nSTARTTLS\r\n")
	if ext := r.expect(250); !strings.Contains(ext, "STARTTLS") {
		t.Errorf("EHLO reply %q without STARTTLS", ext)
	}
	r.expect(501)
	r.expect(220)
	tc := tls.Client(r.c, &tls.Config{RootCAs: ca.Pool, ServerName: host})
	r.tp = textproto.NewConn(tc)
	r.c = tc
	r.send("MAIL FROM:<a@example.org>\r\nSTARTTLS\r\nEHLO client.example\r\n")
	r.expect(503) // no EHLO since STARTTLS
	r.expect(503) // TLS already
	if ext := r.expect(250); strings.Contains(ext, "STARTTLS") {
		t.Errorf("EHLO reply %q in TLS with STARTTLS", ext)
	}
	r.send("MAIL FROM:<a@example.org>\r\n")
	r.expect(250)
}

func TestSMTPStallGreeting(t *testing.T) {
	host := testnet.Host(t)
	s := StartSMTP(t, host, SMTPOptions{})
	s.StallGreeting()
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(300 * time.Millisecond))
	if line, err := bufio.NewReader(c).ReadString('\n'); !isTimeout(err) {
		t.Errorf("stalled greeting: %q, %v; want a timeout", line, err)
	}
	eventually(t, "one connection", func() bool { return s.Connections() == 1 })
}

func TestSMTPStallData(t *testing.T) {
	host := testnet.Host(t)
	s := StartSMTP(t, host, SMTPOptions{})
	s.StallData()
	c := smtpClient(t, s, nil)
	c.SubmissionTimeout = 300 * time.Millisecond
	if step, err := send(c, "alice@example.org", []string{"bob@relay.example"}, "x\r\n"); step != "end of data" || !isTimeout(err) {
		t.Errorf("stalled data: %s: %v, want a timeout at the end of data", step, err)
	}
	if n := len(s.Messages()); n != 0 {
		t.Errorf("%d messages, want 0", n)
	}
	s.DataReply("250 2.0.0 Ok")
	c = smtpClient(t, s, nil)
	if step, err := send(c, "alice@example.org", []string{"bob@relay.example"}, "x\r\n"); err != nil {
		t.Errorf("after DataReply: %s: %v", step, err)
	}
	s.StallData()
	r := dialRaw(t, s)
	r.send("EHLO client.example\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@relay.example>\r\nDATA\r\n")
	for _, code := range []int{250, 250, 250, 354} {
		r.expect(code)
	}
	r.send("x\r\n.\r\n")
	r.c.SetDeadline(time.Now().Add(300 * time.Millisecond))
	if line, err := r.tp.ReadLine(); !isTimeout(err) {
		t.Errorf("stalled data: %q, %v; want a timeout", line, err)
	}
	// The relay still waits when the test ends.
}
