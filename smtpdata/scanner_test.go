package smtpdata

import (
	"bytes"
	"testing"
)

// unstuff is the end of a DATA body and its content as RFC 5321 says,
// line by line: the first line ".\r\n" ends it, a leading dot of any
// other line goes. ok is false when the body has no end.
func unstuff(data []byte) (content []byte, n int, ok bool) {
	content = []byte{}
	for n < len(data) {
		i := bytes.Index(data[n:], []byte("\r\n"))
		if i < 0 {
			return nil, 0, false
		}
		line := data[n : n+i+2]
		n += i + 2
		if string(line) == ".\r\n" {
			return content, n, true
		}
		if line[0] == '.' {
			line = line[1:]
		}
		content = append(content, line...)
	}
	return nil, 0, false
}

// The scanner finds the end where RFC 5321 puts it and undoes the
// dot-stuffing as a line reader does, however the bytes are cut.
func FuzzScanner(f *testing.F) {
	for _, s := range []string{
		"a\r\n.\r\n", ".\r\n", "..\r\n.\r\n", ".a\r\n.\r\nrest", "a\r\r\n.\r\n", ".\r.\r\n.\r\n",
		"a\r\n.\rb\r\n.\r\n", "x\ry\r\n.\r\n", "no end\r\n",
	} {
		f.Add([]byte(s), uint8(2))
	}
	f.Fuzz(func(t *testing.T, data []byte, cut uint8) {
		var out []byte
		var s Scanner
		step := int(cut) + 1
		n, done := 0, false
		for n < len(data) && !done {
			k, d := s.Scan(data[n:min(n+step, len(data))], func(p []byte) { out = append(out, p...) })
			n, done = n+k, d
		}
		want, wantN, ok := unstuff(data)
		if done != ok {
			t.Fatalf("%q: end found %v, want %v", data, done, ok)
		}
		if ok && (n != wantN || !bytes.Equal(out, want) && len(out)+len(want) > 0) {
			t.Errorf("%q: %d bytes, content %q; want %d, %q", data, n, out, wantN, want)
		}
	})
}

// A line ".\rX" keeps its CR: only the stuffed dot goes.
func TestScannerDotCR(t *testing.T) {
	var out []byte
	var s Scanner
	n, done := s.Scan([]byte("a\r\n.\rX\r\n.\r\nNOOP\r\n"), func(p []byte) { out = append(out, p...) })
	if !done || n != 11 || string(out) != "a\r\n\rX\r\n" {
		t.Errorf("%d %v %q", n, done, out)
	}
}

// The end of data is ".\r\n" at the start or after a CRLF; a CR after a
// CR is still just after a CR, and a bare LF starts no line.
func TestScannerEnd(t *testing.T) {
	for body, want := range map[string]int{
		".\r\n":                     3,
		"a\r\n.\r\nRSET\r\n":        6,
		"a\r\n..\r\n.\r\n":          10,
		"a\n.\nb\r\n.\r\nX":         10, // bare LF does not start a line
		"a\r\n.b\r\n":               -1,
		"RCPT TO:<x> NOTIFY=1":      -1,
		"a\r\r\n.\r\n":              7, // a CR after a CR is still just after a CR
		"a\r\r\r\n.\r\n":            8,
		"\r\r\n.\r\n":               6,
		"\r\n.\r\n":                 5,
		"Hello!\r\r\n.\r\nQUIT\r\n": 12,
		".\r\r\n.\r\n":              7, // the line ".\r" ends in CRLF
		"..\r\r\n.\r\n":             8,
		"a\r\n.\r\r\n.\r\n":         10,
		"a\r.\r\n.\r\n":             8, // "\r." is in the middle of a line
		"a\r\r.\r\n":                -1,
		"a\r\r\n\r.\r\n":            -1,
		"a\r\r\n.\r\r\n.\r\n":       11,
		"a\r\n\r\r\n.\r\n":          9,
		"a\r\r\n.\n":                -1,
		"a\r\r\n.\r":                -1,
		"a\r\r\n..\r\n.\r\n":        11,
	} {
		var d Scanner
		n, done := d.Scan([]byte(body), func([]byte) {})
		if !done {
			n = -1
		}
		if n != want {
			t.Errorf("scan(%q) = %d, want %d", body, n, want)
		}
	}
	// The end may be split across reads.
	for _, body := range []string{"hello\r\n.\r\n", "Hello!\r\r\n.\r\n", ".\r\r\n.\r\n"} {
		var d Scanner
		for i := 0; i < len(body); i++ {
			if _, done := d.Scan([]byte{body[i]}, func([]byte) {}); done != (i == len(body)-1) {
				t.Fatalf("%q, byte %d: done %v", body, i, done)
			}
		}
	}
}
