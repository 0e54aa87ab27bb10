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
