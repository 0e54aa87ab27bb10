package postfix

import (
	"bufio"
	"bytes"
	"testing"
)

// A body dot-stuffed in pieces of any size reads back unchanged, line by
// line as a server reads DATA, up to the end-of-data line.
func FuzzDotState(f *testing.F) {
	for _, s := range []string{"a\r\n.\r\n", ".\r\n", "..x\r\n", "a\r\n.b\r\n", "\r\n.", "x"} {
		f.Add([]byte(s), uint8(1))
	}
	f.Fuzz(func(t *testing.T, msg []byte, cut uint8) {
		if !bytes.HasSuffix(msg, []byte("\r\n")) || bytes.Count(msg, []byte("\n")) != bytes.Count(msg, []byte("\r\n")) {
			return // only bodies whose lines end in CRLF are committed
		}
		var out bytes.Buffer
		w := bufio.NewWriter(&out)
		var d dotState
		step := int(cut) + 1
		for i := 0; i < len(msg); i += step {
			d.write(w, msg[i:min(i+step, len(msg))])
		}
		d.end(w)
		w.Flush()
		r := bufio.NewReader(&out)
		var back bytes.Buffer
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				t.Fatalf("no end in %q", out.Bytes())
			}
			if string(line) == ".\r\n" {
				break
			}
			if line[0] == '.' {
				line = line[1:]
			}
			back.Write(line)
		}
		if !bytes.Equal(back.Bytes(), msg) || r.Buffered() != 0 {
			t.Errorf("%q read back as %q", msg, back.Bytes())
		}
	})
}
