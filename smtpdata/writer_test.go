package smtpdata

import (
	"bufio"
	"bytes"
	"testing"
)

// The body goes out dot-stuffed and otherwise byte for byte, however it
// is cut into chunks, with the final dot.
func TestWriter(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"a\r\n", "a\r\n.\r\n"},
		{".a\r\n..b\r\nc.\r\n", "..a\r\n...b\r\nc.\r\n.\r\n"},
		{"a\r\n.\r\nb\r\n", "a\r\n..\r\nb\r\n.\r\n"},
		{"no end", "no end\r\n.\r\n"},
		{"", ".\r\n"},
		{"8bit \xff\xfe\r\n", "8bit \xff\xfe\r\n.\r\n"},
	} {
		for cut := 1; cut <= len(tt.in)+1; cut++ {
			var out bytes.Buffer
			d := NewWriter(&out)
			for in := []byte(tt.in); len(in) > 0; {
				n := min(cut, len(in))
				if _, err := d.Write(in[:n]); err != nil {
					t.Fatal(err)
				}
				in = in[n:]
			}
			if err := d.End(); err != nil {
				t.Fatal(err)
			}
			if out.String() != tt.want {
				t.Errorf("%q in chunks of %d: wrote %q, want %q", tt.in, cut, out.String(), tt.want)
			}
		}
	}
}

// The body is dot-stuffed so that the server reads back exactly the
// message: a line of a single dot never ends it early.
func FuzzWriter(f *testing.F) {
	for _, s := range []string{"a\r\n.\r\nb\r\n", ".\r\n", "..\r\n", "x", ""} {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, msg []byte, cut uint8) {
		var out bytes.Buffer
		d := NewWriter(&out)
		step := int(cut) + 1
		for in := msg; len(in) > 0; {
			n := min(step, len(in))
			d.Write(in[:n])
			in = in[n:]
		}
		d.End()
		// Read it back as a server would: line by line to the lone dot.
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
		want := msg
		if len(want) > 0 && !bytes.HasSuffix(want, []byte("\n")) {
			want = append(append([]byte{}, want...), '\r', '\n')
		}
		if !bytes.Equal(back.Bytes(), want) || r.Buffered() != 0 {
			t.Errorf("%q read back as %q", msg, back.Bytes())
		}
	})
}
