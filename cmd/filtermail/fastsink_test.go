package main

import (
	"bufio"
	"bytes"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// fastSink is an SMTP server that reads what it is sent in large blocks,
// throws the messages away and counts those committed: a stand-in for
// Postfix's reinjection port that costs little CPU, unlike go-smtp's
// server, which reads DATA a byte at a time. It advertises CHUNKING, as
// Postfix does; a BDAT transaction ended by RSET or by the connection's
// end is not counted.
type fastSink struct {
	Port     int
	messages atomic.Int64 // committed
	bytes    atomic.Int64 // in the messages committed, as sent

	ln    net.Listener
	mu    sync.Mutex
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

// newFastSink starts a sink on a loopback port of the kernel's choosing;
// it stops when the test ends.
func newFastSink(tb testing.TB) *fastSink {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &fastSink{Port: ln.Addr().(*net.TCPAddr).Port, ln: ln, conns: map[net.Conn]bool{}}
	s.wg.Add(1)
	go s.serve()
	tb.Cleanup(s.close)
	return s
}

func (s *fastSink) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

// close stops accepting, ends the open connections and waits for them.
func (s *fastSink) close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *fastSink) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[c] = true
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.session(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
}

// session serves one connection until QUIT or an error. Replies are
// flushed when no command is waiting to be read, so pipelined commands
// get their replies together.
func (s *fastSink) session(c net.Conn) {
	r := bufio.NewReaderSize(c, 256<<10)
	w := bufio.NewWriter(c)
	reply := func(lines ...string) bool {
		for _, l := range lines {
			w.WriteString(l + "\r\n")
		}
		if r.Buffered() > 0 {
			return true
		}
		return w.Flush() == nil
	}
	var (
		mail  bool  // MAIL accepted
		rcpts int   // recipients accepted
		size  int64 // BDAT bytes of the transaction so far
	)
	commit := func(n int64) {
		s.messages.Add(1)
		s.bytes.Add(n)
		mail, rcpts, size = false, 0, 0
	}
	ok := reply("220 sink.test ESMTP")
	for ok {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(strings.TrimRight(string(line), "\r\n"), " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			ok = reply("250-sink.test", "250-PIPELINING", "250-SIZE 104857600", "250-8BITMIME",
				"250-SMTPUTF8", "250-CHUNKING", "250 DSN")
		case "HELO":
			ok = reply("250 sink.test")
		case "MAIL":
			mail, rcpts, size = true, 0, 0
			ok = reply("250 2.1.0 Ok")
		case "RCPT":
			if !mail {
				ok = reply("503 5.5.1 Error: need MAIL command")
				break
			}
			rcpts++
			ok = reply("250 2.1.5 Ok")
		case "DATA":
			if rcpts == 0 {
				ok = reply("503 5.5.1 Error: need RCPT command")
				break
			}
			if !reply("354 End data with <CR><LF>.<CR><LF>") {
				return
			}
			n, err := readData(r)
			if err != nil {
				return
			}
			commit(n)
			ok = reply("250 2.0.0 Ok: queued")
		case "BDAT":
			n, last, good := bdatArgs(arg)
			if !good {
				ok = reply("501 5.5.4 Syntax: BDAT count [LAST]")
				break
			}
			if _, err := r.Discard(int(n)); err != nil {
				return
			}
			switch {
			case rcpts == 0:
				ok = reply("503 5.5.1 Error: need RCPT command")
			case last:
				commit(size + n)
				ok = reply("250 2.0.0 Ok: queued")
			default:
				size += n
				ok = reply("250 2.0.0 Ok: " + strconv.FormatInt(n, 10) + " octets")
			}
		case "RSET":
			mail, rcpts, size = false, 0, 0
			ok = reply("250 2.0.0 Ok")
		case "NOOP":
			ok = reply("250 2.0.0 Ok")
		case "QUIT":
			reply("221 2.0.0 Bye")
			w.Flush()
			return
		default:
			ok = reply("502 5.5.2 Error: command not recognized")
		}
	}
}

// bdatArgs parses the arguments of BDAT: a count and maybe LAST.
func bdatArgs(arg string) (n int64, last, ok bool) {
	f := strings.Fields(arg)
	if len(f) == 0 || len(f) > 2 || len(f) == 2 && !strings.EqualFold(f[1], "LAST") {
		return 0, false, false
	}
	n, err := strconv.ParseInt(f[0], 10, 64)
	return n, len(f) == 2, err == nil && n >= 0
}

// readData reads a DATA body up to and including its end-of-data line,
// in blocks, and returns the size of the message without that line (dot
// stuffing included).
func readData(r *bufio.Reader) (int64, error) {
	end := bodyEnd{state: endCRLF} // the DATA line's CRLF came before
	var total int64
	for {
		if r.Buffered() == 0 {
			if _, err := r.Peek(1); err != nil {
				return total, err
			}
		}
		p, _ := r.Peek(r.Buffered())
		n, done := end.scan(p)
		r.Discard(n)
		total += int64(n)
		if done {
			return total - int64(len(".\r\n")), nil
		}
	}
}

// bodyEnd finds the end of a DATA body, "\r\n.\r\n", in the blocks read,
// the sequence spanning blocks included. Its state is how much of the
// sequence the last block ended with.
type bodyEnd struct{ state int }

// The states of bodyEnd: the part of "\r\n.\r\n" seen last.
const (
	endNone    = iota
	endCR      // "\r"
	endCRLF    // "\r\n", the start of a line
	endDot     // "\r\n."
	endDotCR   // "\r\n.\r"
	endDotCRLF // "\r\n.\r\n": the end
)

// dataEndSeq is the end of a DATA body.
var dataEndSeq = []byte("\r\n.\r\n")

// scan returns how many bytes of p belong to the body, the end included,
// and whether the end was among them.
func (e *bodyEnd) scan(p []byte) (n int, done bool) {
	// A sequence begun in an earlier block goes on here, or not.
	for e.state != endNone && n < len(p) {
		e.step(p[n])
		n++
		if e.state == endDotCRLF {
			return n, true
		}
	}
	if i := bytes.Index(p[n:], dataEndSeq); i >= 0 {
		e.state = endDotCRLF
		return n + i + len(dataEndSeq), true
	}
	// The sequence is not in p[n:], so its last four bytes hold all of a
	// beginning that the next block may finish.
	for _, c := range p[max(n, len(p)-(len(dataEndSeq)-1)):] {
		e.step(c)
	}
	return len(p), false
}

// step moves on by one byte.
func (e *bodyEnd) step(c byte) {
	switch {
	case c == '\r' && e.state == endDot:
		e.state = endDotCR
	case c == '\r':
		e.state = endCR
	case c == '\n' && e.state == endCR:
		e.state = endCRLF
	case c == '\n' && e.state == endDotCR:
		e.state = endDotCRLF
	case c == '.' && e.state == endCRLF:
		e.state = endDot
	default:
		e.state = endNone
	}
}

func TestBodyEnd(t *testing.T) {
	const body = "Subject: x\r\n\r\n..stuffed\r\n.x\r\nbare\n.\n\r\r\n.. \r\n.\r\r\n"
	msg := body + ".\r\n"
	stream := msg + "QUIT\r\n"
	// Split in two at every position, and a byte at a time.
	for i := 0; i <= len(stream); i++ {
		end := bodyEnd{state: endCRLF}
		n1, done := end.scan([]byte(stream[:i]))
		n := n1
		if !done {
			n2, d := end.scan([]byte(stream[i:]))
			n, done = n1+n2, d
		}
		if !done || n != len(msg) {
			t.Errorf("split at %d: %d bytes, done %v; want %d, true", i, n, done, len(msg))
		}
	}
	end := bodyEnd{state: endCRLF}
	for i := range len(stream) {
		if n, done := end.scan([]byte{stream[i]}); done {
			if i+1 != len(msg) || n != 1 {
				t.Errorf("byte by byte: ended at %d, want %d", i+1, len(msg))
			}
			break
		}
	}
	// An empty body; a body that never ends.
	end = bodyEnd{state: endCRLF}
	if n, done := end.scan([]byte(".\r\nQUIT\r\n")); n != 3 || !done {
		t.Errorf("empty body: %d bytes, done %v; want 3, true", n, done)
	}
	end = bodyEnd{state: endCRLF}
	if n, done := end.scan([]byte(body)); n != len(body) || done {
		t.Errorf("unended body: %d bytes, done %v; want %d, false", n, done, len(body))
	}
}

// TestFastSink runs pipelined transactions past the sink and checks what
// it counts: messages over DATA and BDAT, but not one aborted by RSET.
func TestFastSink(t *testing.T) {
	s := newFastSink(t)
	c, err := net.Dial("tcp", s.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tx := "MAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\n"
	steps := []struct{ send, reply string }{
		{"", "220"},
		{"EHLO client.test\r\n", "250"},
		{tx + "DATA\r\n", "250 250 354"},
		{"one\r\n..two\r\n.\r\n", "250"}, // 12 bytes, stuffing included
		{tx + "BDAT 7\r\n\r\n.\r\nabBDAT 3 LAST\r\nxyz", "250 250 250 250"}, // 10 bytes
		{tx + "BDAT 4\r\nlostRSET\r\n", "250 250 250 250"},
		{"BDAT 2 LAST\r\nno", "503"},
		{tx + "BDAT 5\r\nfiveaBDAT 0 LAST\r\n", "250 250 250 250"}, // 5 bytes
		{"QUIT\r\n", "221"},
	}
	r := bufio.NewReader(c)
	for _, st := range steps {
		if _, err := c.Write([]byte(st.send)); err != nil {
			t.Fatal(err)
		}
		var got []string
		for range strings.Fields(st.reply) {
			line, err := r.ReadString('\n')
			for err == nil && len(line) > 3 && line[3] == '-' {
				line, err = r.ReadString('\n')
			}
			if err != nil {
				t.Fatalf("after %q: %v", st.send, err)
			}
			got = append(got, line[:3])
		}
		if g := strings.Join(got, " "); g != st.reply {
			t.Errorf("after %q: replies %s, want %s", st.send, g, st.reply)
		}
	}
	if m, b := s.messages.Load(), s.bytes.Load(); m != 3 || b != 27 {
		t.Errorf("counted %d messages of %d bytes, want 3 of 27", m, b)
	}
}
