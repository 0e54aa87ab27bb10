package transport

import (
	"bytes"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// scriptConn is a connection whose peer sends in, step bytes at a time,
// and records what is written to it.
type scriptConn struct {
	net.Conn
	in      []byte
	step    int
	written bytes.Buffer
}

func (s *scriptConn) Read(p []byte) (int, error) {
	if len(s.in) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.in[:min(len(s.in), s.step)])
	s.in = s.in[n:]
	return n, nil
}

func (s *scriptConn) Write(p []byte) (int, error)      { return s.written.Write(p) }
func (s *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (s *scriptConn) SetWriteDeadline(time.Time) error { return nil }

// withoutBDAT is what go-smtp should read of input, line by line: every
// BDAT command and its chunk left out, and how many were.
func withoutBDAT(input []byte) ([]byte, int) {
	var out []byte
	n := 0
	for len(input) > 0 {
		i := bytes.IndexByte(input, '\n')
		if i < 0 {
			return append(out, input...), n
		}
		line := input[:i+1]
		input = input[i+1:]
		if !isBDAT(line) {
			out = append(out, line...)
			continue
		}
		n++
		f := strings.Fields(string(line))
		if len(f) < 2 || len(f) > 3 {
			continue
		}
		if size, err := strconv.ParseUint(f[1], 10, 63); err == nil {
			input = input[min(uint64(len(input)), size):]
		}
	}
	return out, n
}

// Commands reach go-smtp unchanged, however they arrive, but BDAT, which
// the connection answers itself after reading past its chunk.
func FuzzLMTPConnCommands(f *testing.F) {
	f.Add([]byte("LHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 5\r\nhelloRSET\r\nQUIT\r\n"), uint8(3))
	f.Add([]byte("BDAT 0\r\nQUIT\r\nbdat x\r\nBDAT 3 LAST\r\nabc"), uint8(64))
	f.Add([]byte(strings.Repeat("x", 300)+"BDAT 1\r\nz\r\nNOOP\r\n"), uint8(200))
	f.Fuzz(func(t *testing.T, input []byte, step uint8) {
		sc := &scriptConn{in: bytes.Clone(input), step: int(step%128) + 1}
		lc := &lmtpConn{Conn: sc}
		var got []byte
		buf := make([]byte, 100)
		for range 100000 {
			n, err := lc.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				break
			}
		}
		want, bdats := withoutBDAT(input)
		if !bytes.Equal(got, want) {
			t.Errorf("go-smtp read %q, want %q", got, want)
		}
		if replies := strings.Count(sc.written.String(), "\r\n"); replies > bdats {
			t.Errorf("%d replies written for %d BDAT commands: %q", replies, bdats, sc.written.String())
		}
	})
}
