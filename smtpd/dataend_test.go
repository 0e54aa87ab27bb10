package smtpd

import (
	"bytes"
	"io"
	"log"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// From every state but the end, dataTerminator ends go-smtp's reader
// after exactly its bytes.
func TestDataTerminator(t *testing.T) {
	for state := smtpBeginLine; state < smtpEOF; state++ {
		r := goSMTPReader{state: state}
		for i := 0; i < len(dataTerminator); i++ {
			if r.ended() {
				t.Errorf("state %d: ended after %d bytes", state, i)
			}
			r.step(dataTerminator[i])
		}
		if !r.ended() {
			t.Errorf("state %d: not ended", state)
		}
		r = goSMTPReader{state: state}
		if end := r.terminate(); string(end) != dataTerminator || !r.ended() {
			t.Errorf("state %d: terminate %q", state, end)
		}
	}
	r := goSMTPReader{state: smtpEOF}
	if end := r.terminate(); len(end) != 0 {
		t.Errorf("at the end: terminate %q", end)
	}
}

// recorder is a go-smtp backend that keeps the last message.
type recorder struct {
	mu  sync.Mutex
	msg []byte
}

func (rec *recorder) NewSession(*smtp.Conn) (smtp.Session, error) { return rec, nil }
func (rec *recorder) Mail(string, *smtp.MailOptions) error        { return nil }
func (rec *recorder) Rcpt(string, *smtp.RcptOptions) error        { return nil }
func (rec *recorder) Reset()                                      {}
func (rec *recorder) Logout() error                               { return nil }

func (rec *recorder) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	rec.mu.Lock()
	rec.msg = b
	rec.mu.Unlock()
	return err
}

func (rec *recorder) last() []byte {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return rec.msg
}

// plainSMTP is a session with a plain go-smtp server, whose data reader
// is the one paramConn hands DATA bodies to.
type plainSMTP struct {
	t    *testing.T
	rec  *recorder
	conn net.Conn
	text *textproto.Conn
}

func dialPlainSMTP(t *testing.T) *plainSMTP {
	t.Helper()
	rec := &recorder{}
	srv := smtp.NewServer(rec)
	srv.Domain = "test"
	srv.ErrorLog = log.New(io.Discard, "", 0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	p := &plainSMTP{t: t, rec: rec, conn: conn, text: textproto.NewConn(conn)}
	p.reply("greeting", 220)
	p.text.PrintfLine("EHLO client.test")
	p.reply("EHLO", 250)
	return p
}

// reply reads a reply with the given code, or fails the test. The
// deadline is there to catch a server that waits for more data.
func (p *plainSMTP) reply(what string, code int) string {
	p.t.Helper()
	p.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, msg, err := p.text.ReadResponse(code)
	if err != nil {
		p.t.Fatalf("%s: %v %s", what, err, msg)
	}
	return msg
}

// send runs a transaction with data as the bytes after DATA, followed
// by a NOOP, and returns the message go-smtp handed to its backend. It
// fails the test unless go-smtp's data reader ends exactly at the end of
// data: earlier, the rest would be answered as commands before the NOOP;
// later, the NOOP would be taken for data and no reply would come.
func (p *plainSMTP) send(data []byte) []byte {
	p.t.Helper()
	cmds := "MAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n" + string(data) + "NOOP\r\n"
	if _, err := p.conn.Write([]byte(cmds)); err != nil {
		p.t.Fatal(err)
	}
	what := strconv.Quote(string(data))
	p.reply(what, 250)
	p.reply(what, 250)
	p.reply(what, 354)
	p.reply(what+", end of data", 250)
	if msg := p.reply(what+", NOOP", 250); !strings.HasSuffix(msg, "done nothing") {
		p.t.Fatalf("%q: reply %q before the NOOP's", data, msg)
	}
	return p.rec.last()
}

// hasBareCR reports whether b holds a CR that no LF follows.
func hasBareCR(b []byte) bool {
	for i, c := range b {
		if c == '\r' && (i+1 == len(b) || b[i+1] != '\n') {
			return true
		}
	}
	return false
}

// Whenever dataEnd sees the end of a body, go-smtp's real data reader,
// given the body up to there and the bytes dataBody adds, ends exactly
// there too; and when bytes were added, the message it hands on holds a
// bare CR, to be refused. Bodies: every string of up to 7 bytes made of
// the bytes that matter ('\r', '\n', '.' and any other), then an end.
func TestDataBodyGoSMTP(t *testing.T) {
	p := dialPlainSMTP(t)
	bodies := []string{""}
	for i := 0; i < len(bodies); i++ {
		if len(bodies[i]) < 7 {
			for _, c := range "\r\n.a" {
				bodies = append(bodies, bodies[i]+string(c))
			}
		}
	}
	bodies = append(bodies, "Hello!\r\r\n.\r\n", ".\r\r\n.\r\n", "a\r\r\r\n.\r\n", "a\r\n..\r\r\n.\r\n")
	added := 0
	for _, s := range bodies {
		body := []byte(s + "\r\n.\r\n")
		var d dataBody
		n, end, done := d.scan(body)
		if !done {
			t.Fatalf("%q: no end", body)
		}
		msg := p.send(append(body[:n:n], end...))
		if len(end) > 0 {
			added++
			if !hasBareCR(msg) {
				t.Errorf("%q: bytes added, and go-smtp's message %q has no bare CR", body[:n], msg)
			}
		}
	}
	if added == 0 {
		t.Error("go-smtp's reader saw every end")
	}
}

// dataSeeds are bodies for FuzzDataEnd, many with CRs.
var dataSeeds = []string{
	"Hello!\r\r\n.\r\n",
	"hello\r\n.\r\nQUIT\r\n",
	".\r\n",
	".\r\r\n.\r\n",
	"a\r\r\r\n.\r\n",
	"\r\r\n.\r\n",
	"a\r\n..\r\r\n.\r\n",
	"a\r.\r\n.\r\n",
	"\r\r\r\r\n\r\n.\r\r\n.\r\n",
	"a\n.\nb\r\n.\r\n",
}

// FuzzDataEnd checks dataEnd and dataBody on any body: the end is within
// it, scanning it in two parts or byte by byte finds the same end, go-smtp's reader (as
// goSMTPReader follows it) never ends before it, and with the bytes
// dataBody adds it ends there. TestDataBodyGoSMTP holds goSMTPReader to
// the real reader.
func FuzzDataEnd(f *testing.F) {
	for _, s := range dataSeeds {
		f.Add([]byte(s), uint16(len(s)/2))
	}
	f.Fuzz(func(t *testing.T, body []byte, split uint16) {
		var whole dataEnd
		n, done := whole.scan(body)
		if n < 0 || n > len(body) || !done && n != len(body) {
			t.Fatalf("scan(%q) = %d, %v", body, n, done)
		}
		if done && !bytes.HasSuffix(body[:n], []byte(".\r\n")) {
			t.Fatalf("scan(%q) ends at %d, not after .\\r\\n", body, n)
		}

		i := int(split) % (len(body) + 1)
		var parts dataEnd
		n1, done1 := parts.scan(body[:i])
		if !done1 {
			k, done2 := parts.scan(body[i:])
			n1, done1 = i+k, done2
		}
		if n1 != n || done1 != done {
			t.Fatalf("scan(%q) split at %d = %d, %v; whole %d, %v", body, i, n1, done1, n, done)
		}
		var bytewise dataEnd
		for j := range body {
			if _, end := bytewise.scan(body[j : j+1]); end {
				if !done || j+1 != n {
					t.Fatalf("scan(%q) byte by byte ends at %d; whole %d, %v", body, j+1, n, done)
				}
				break
			}
			if done && j+1 == n {
				t.Fatalf("scan(%q) byte by byte does not end at %d", body, n)
			}
		}

		var r goSMTPReader
		for j := 0; j < n; j++ {
			if r.ended() {
				t.Fatalf("%q: go-smtp's reader ends at %d, before %d", body, j, n)
			}
			r.step(body[j])
		}
		var d dataBody
		m, end, done3 := d.scan(body)
		if m != n || done3 != done {
			t.Fatalf("dataBody.scan(%q) = %d, %v; dataEnd %d, %v", body, m, done3, n, done)
		}
		if !done {
			if len(end) != 0 {
				t.Fatalf("%q: %q added before the end", body, end)
			}
			return
		}
		if len(end) > 0 && (r.state != smtpBeginLine || string(end) != dataTerminator) {
			t.Fatalf("%q: %q added in state %d", body, end, r.state)
		}
		for j := range end {
			if r.ended() {
				t.Fatalf("%q: go-smtp's reader ends within %q", body, end)
			}
			r.step(end[j])
		}
		if !r.ended() {
			t.Fatalf("%q: go-smtp's reader not ended after %q", body, end)
		}
	})
}
