package smtpd

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"io"
	"net"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"filtermail/metrics"
	"filtermail/smtpd/smtpdtest"
	"filtermail/smtpdata"
)

func TestReplyScanner(t *testing.T) {
	replies := "220 hello\r\n250-first\r\n250-SIZE 10\r\n250 last\r\n354 go on\r\n421\r\n" +
		"250\r\n999 odd\r\nxyz nothing\r\n550 5.1.1 no\r\n"
	want := []int{220, 250, 354, 421, 250, 999, 550}
	// Whole, and split at every byte.
	for _, step := range []int{len(replies), 1, 3, 7} {
		var s replyScanner
		var got []int
		for i := 0; i < len(replies); i += step {
			s.scan([]byte(replies[i:min(i+step, len(replies))]), func(code int) { got = append(got, code) })
		}
		if len(got) != len(want) {
			t.Fatalf("step %d: codes %v, want %v", step, got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("step %d: codes %v, want %v", step, got, want)
				break
			}
		}
	}
}

// startServer runs an outgoing filter on a free port, reinjecting to a
// port where nothing listens.
func startServer(t *testing.T) *Server {
	t.Helper()
	s, _, _ := startFilter(t, Outgoing, 9)
	return s
}

func dialServer(t *testing.T, s *Server) (*textproto.Conn, net.Conn) {
	t.Helper()
	conn, err := net.Dial("tcp", s.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	c := textproto.NewConn(conn)
	if _, _, err := c.ReadResponse(220); err != nil {
		t.Fatal(err)
	}
	return c, conn
}

func exchange(t *testing.T, c *textproto.Conn, line string, code int) {
	t.Helper()
	if err := c.PrintfLine("%s", line); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := c.ReadResponse(code); err != nil {
		t.Fatalf("%s: %v %s", line, err, msg)
	}
}

// When the drain runs out, a client still in a transaction gets a 421 and
// the connection closes.
func TestShutdownCutsOff(t *testing.T) {
	s := startServer(t)
	c, conn := dialServer(t, s)
	exchange(t, c, "EHLO client.test", 250)
	exchange(t, c, "MAIL FROM:<alice@chat.example.org>", 250)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); err == nil {
		t.Error("Shutdown did not report the cut-off")
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if !strings.HasPrefix(line, "421 4.3.2 ") {
		t.Errorf("client got %q, %v; want a 421", line, err)
	}
}

// A client between transactions is told, by the drain itself: Shutdown
// has no deadline here to cut it off.
func TestShutdownIdle(t *testing.T) {
	s := startServer(t)
	c, _ := dialServer(t, s)
	exchange(t, c, "EHLO client.test", 250)
	go s.Shutdown(context.Background())
	if _, msg, err := c.ReadResponse(421); err != nil {
		t.Errorf("idle client: %v %s", err, msg)
	}
}

// fakeConn hands out the client's bytes a few at a time.
type fakeConn struct {
	net.Conn
	in   []byte
	step int
}

func (f *fakeConn) Read(p []byte) (int, error) {
	if len(f.in) == 0 {
		return 0, io.EOF
	}
	n := copy(p, f.in[:min(len(f.in), f.step)])
	f.in = f.in[n:]
	return n, nil
}

func (f *fakeConn) Write(p []byte) (int, error)      { return len(p), nil }
func (f *fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (f *fakeConn) SetWriteDeadline(time.Time) error { return nil }
func (f *fakeConn) Close() error                     { return nil }

// FuzzParamConn feeds arbitrary client input through a connection while
// the server answers, and checks that go-smtp gets the commands unchanged
// (but RCPT parameters), each DATA body replaced by its end-of-data line,
// and that a session reading a body gets its content, dot-stuffing undone.
func FuzzParamConn(f *testing.F) {
	f.Add([]byte("EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d> NOTIFY=NEVER\r\nDATA\r\nhello\r\n.\r\nQUIT\r\n"), uint8(7), true, true)
	f.Add([]byte("BDAT 5 LAST\r\nhelloRSET\r\n"), uint8(3), false, false)
	f.Add([]byte("MAIL FROM:<a@b>\r\nDATA\r\nHello!\r\r\n.\r\nRSET\r\nDATA\r\n.\r\r\n.\r\nQUIT\r\n"), uint8(1), true, false)
	f.Add([]byte("DATA\r\na\r\n.\rX\r\n..\r\n.\r\nNOOP\r\n"), uint8(64), true, true)
	f.Fuzz(func(t *testing.T, input []byte, step uint8, accept, readBody bool) {
		l := newParamListener(nil, metrics.New("outgoing", "test"), time.Minute, 0)
		fc := &fakeConn{in: input, step: int(step%64) + 1}
		c := &paramConn{Conn: fc, l: l}
		l.conns[c] = struct{}{}
		l.m.ConnectionOpened()
		var out []byte
		var bodies [][]byte
		buf := make([]byte, 100)
		for range 10000 {
			n, err := c.Read(buf)
			out = append(out, buf[:n]...)
			if err != nil {
				break
			}
			reply := "250 ok\r\n"
			if accept && bytes.HasSuffix(bytes.ToUpper(out), []byte("DATA\r\n")) {
				reply = "354 go on\r\n"
			}
			c.Write([]byte(reply))
			if body := c.Body(); body != nil && readBody {
				content, err := io.ReadAll(body)
				if err != nil {
					break
				}
				bodies = append(bodies, content)
			}
		}
		c.Close()
		if bytes.Contains(bytes.ToUpper(input), []byte("RCPT")) {
			return
		}
		wantOut, wantBodies := goSMTPSees(input, accept)
		if !bytes.Equal(out, wantOut) {
			t.Fatalf("go-smtp got\n%q\nwant\n%q", out, wantOut)
		}
		if readBody && len(bodies) > 0 {
			for i := range bodies {
				if !bytes.Equal(bodies[i], wantBodies[i]) {
					t.Fatalf("body %d: %q, want %q", i, bodies[i], wantBodies[i])
				}
			}
		}
	})
}

// scanBody is the content of the DATA body at the start of input and its
// length, end line included, as smtpdata.Scanner (fuzzed against RFC
// 5321's line-by-line reading) finds them; ok is false if it has no end.
func scanBody(input []byte) (content []byte, n int, ok bool) {
	var s smtpdata.Scanner
	content = []byte{}
	n, ok = s.Scan(input, func(p []byte) { content = append(content, p...) })
	return content, n, ok
}

// goSMTPSees is what a paramConn hands go-smtp of input, line by line as
// RFC 5321 reads it, with DATA answered 354 if accept, and the content of
// each DATA body. It stops where a body has no end.
func goSMTPSees(input []byte, accept bool) (out []byte, bodies [][]byte) {
	for len(input) > 0 {
		i := bytes.IndexByte(input, '\n')
		if i < 0 || i+1 > maxCommandLine {
			return append(out, input...), bodies
		}
		line := input[:i+1]
		input = input[i+1:]
		out = append(out, line...)
		verb, arg, _ := strings.Cut(strings.TrimRight(string(line), "\r\n"), " ")
		switch strings.ToUpper(verb) {
		case "DATA":
			if !accept || !bytes.HasSuffix(bytes.ToUpper(line), []byte("DATA\r\n")) {
				continue // the test's server answers 354 only then
			}
			content, n, ok := scanBody(input)
			if !ok {
				return out, bodies
			}
			out = append(out, endOfData...)
			bodies = append(bodies, content)
			input = input[n:]
		case "BDAT":
			if size, ok := chunkSize(arg); ok {
				k := int(min(size, uint64(len(input))))
				out = append(out, input[:k]...)
				input = input[k:]
			}
		}
	}
	return out, bodies
}

// A body whose last line ends in "\r\r\n" gets its reply at once, sent
// whole, byte by byte, or with the next command; the message (no From
// header, a bare CR) is refused, and the session goes on.
func TestDataEndAfterCRCR(t *testing.T) {
	for _, tc := range []struct {
		name string
		step int // bytes a write, 0 for all at once
		next string
	}{
		{"whole", 0, ""},
		{"bytewise", 1, ""},
		{"pipelined", 0, "RSET\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := smtpdtest.NewSink(t, smtpdtest.Accept)
			s, _, _ := startFilter(t, Outgoing, sink.Port)
			c, conn := dialServer(t, s)
			exchange(t, c, "EHLO client.test", 250)
			exchange(t, c, "MAIL FROM:<alice@chat.example.org>", 250)
			exchange(t, c, "RCPT TO:<bob@example.net>", 250)
			exchange(t, c, "DATA", 354)
			data := []byte("Hello!\r\r\n.\r\n" + tc.next)
			step := cmp.Or(tc.step, len(data))
			for i := 0; i < len(data); i += step {
				if _, err := conn.Write(data[i:min(i+step, len(data))]); err != nil {
					t.Fatal(err)
				}
			}
			// The deadline catches a session that waits for more data.
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			code, text, err := c.ReadResponse(0)
			if err != nil && code == 0 {
				t.Fatalf("no reply at the end of data: %v", err)
			}
			if code/100 != 5 {
				t.Errorf("end of data: %d %s, want a refusal", code, text)
			}
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			if tc.next != "" {
				if _, text, err := c.ReadResponse(250); err != nil {
					t.Fatalf("RSET after the end of data: %v %s", err, text)
				}
			} else {
				exchange(t, c, "RSET", 250)
			}

			exchange(t, c, "MAIL FROM:<alice@chat.example.org>", 250)
			exchange(t, c, "RCPT TO:<bob@example.net>", 250)
			exchange(t, c, "DATA", 354)
			msg := "From: <alice@chat.example.org>\r\nTo: <bob@example.net>\r\nSecure-Join: vc-request\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n" +
				"--x\r\nContent-Type: text/plain\r\n\r\nSecure-Join: vc-request\r\n--x--\r\n"
			w := c.DotWriter()
			w.Write([]byte(msg))
			w.Close()
			if _, text, err := c.ReadResponse(250); err != nil {
				t.Fatalf("second message: %v %s", err, text)
			}
			exchange(t, c, "QUIT", 221)
			got := sink.Messages()
			if len(got) != 1 || !bytes.Contains(got[0].Data, []byte("--x--\r\n")) || bytes.Contains(got[0].Data, []byte("Hello!")) {
				t.Errorf("reinjected %+v, want the second message only", got)
			}
		})
	}
}

// writesConn records each write.
type writesConn struct {
	fakeConn
	writes []string
}

func (w *writesConn) Write(p []byte) (int, error) {
	w.writes = append(w.writes, string(p))
	return len(p), nil
}

// go-smtp writes each line of a reply on its own; the client gets a
// multi-line reply in one write, unless it is very long, and every byte in
// order.
func TestMultiLineReplyOneWrite(t *testing.T) {
	long := "250-" + strings.Repeat("x", 1500) + "\r\n"
	for _, tt := range []struct {
		lines []string
		want  []string
	}{
		{[]string{"250-Hello\r\n", "250-PIPELINING\r\n", "250 SIZE 10\r\n"}, []string{"250-Hello\r\n250-PIPELINING\r\n250 SIZE 10\r\n"}},
		{[]string{"220 ready\r\n", "250 ok\r\n"}, []string{"220 ready\r\n", "250 ok\r\n"}},
		{[]string{long, long, long, "250-a\r\n", "250 b\r\n"}, []string{long + long + long, "250-a\r\n250 b\r\n"}},
	} {
		l := newParamListener(nil, metrics.New("outgoing", "test"), time.Minute, 0)
		w := &writesConn{}
		c := &paramConn{Conn: w, l: l}
		for _, line := range tt.lines {
			if n, err := c.Write([]byte(line)); n != len(line) || err != nil {
				t.Fatalf("Write: %d, %v", n, err)
			}
		}
		if strings.Join(w.writes, "|") != strings.Join(tt.want, "|") {
			t.Errorf("%.40q written as %.80q, want %.80q", tt.lines, w.writes, tt.want)
		}
	}
}
