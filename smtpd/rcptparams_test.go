package smtpd

import (
	"strings"
	"testing"
)

func TestStripRcptParams(t *testing.T) {
	for in, want := range map[string]string{
		"RCPT TO:<a@b> ORCPT=rfc822;a@b\r\n":                    "RCPT TO:<a@b>\r\n",
		"rcpt to:<a@b> NOTIFY=DELAY,FAILURE\r\n":                "rcpt to:<a@b>\r\n",
		"RCPT TO: <a@b> NOTIFY=garbage X-ANYTHING=1\n":          "RCPT TO:<a@b>\r\n",
		"RCPT TO:<\"odd> name\"@b> NOTIFY=NEVER\r\n":            "RCPT TO:<\"odd> name\"@b>\r\n",
		"RCPT TO:<\"esc\\\"> x\"@b> NOTIFY=NEVER\r\n":           "RCPT TO:<\"esc\\\"> x\"@b>\r\n",
		"RCPT TO:a@b NOTIFY=NEVER\r\n":                          "RCPT TO:a@b\r\n",
		"RCPT TO:<a@b>\r\n":                                     "RCPT TO:<a@b>\r\n",
		"RCPT TO:<a@b\r\n":                                      "RCPT TO:<a@b\r\n", // left for go-smtp to refuse
		"RCPT FROM:<a@b> X=1\r\n":                               "RCPT FROM:<a@b> X=1\r\n",
		"RCPT TO:<@relay.example:a@b> NOTIFY=SUCCESS\r\n":       "RCPT TO:<@relay.example:a@b>\r\n",
		"RCPT TO:<a@b> ORCPT=rfc822;=22weird=22@b RET=HDRS\r\n": "RCPT TO:<a@b>\r\n",
	} {
		if got := string(stripRcptParams([]byte(in))); got != want {
			t.Errorf("stripRcptParams(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDataEnd(t *testing.T) {
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
		var d dataEnd
		n, done := d.scan([]byte(body))
		if !done {
			n = -1
		}
		if n != want {
			t.Errorf("scan(%q) = %d, want %d", body, n, want)
		}
	}
	// The end may be split across reads.
	for _, body := range []string{"hello\r\n.\r\n", "Hello!\r\r\n.\r\n", ".\r\r\n.\r\n"} {
		var d dataEnd
		for i := 0; i < len(body); i++ {
			if _, done := d.scan([]byte{body[i]}); done != (i == len(body)-1) {
				t.Fatalf("%q, byte %d: done %v", body, i, done)
			}
		}
	}
}

func FuzzStripRcptParams(f *testing.F) {
	f.Add("RCPT TO:<a@b> NOTIFY=NEVER\r\n")
	f.Add("RCPT TO:<\"x\\\">\"@b> A=B\r\n")
	f.Fuzz(func(t *testing.T, line string) {
		out := string(stripRcptParams([]byte(line)))
		if out != line && (!strings.HasSuffix(out, "\r\n") || strings.Count(out, "\n") != 1 ||
			!strings.EqualFold(out[:8], "RCPT TO:")) {
			t.Fatalf("stripRcptParams(%q) = %q", line, out)
		}
	})
}
