package mxdeliv

import "testing"

// Each response of the contract, and what the sending relay makes of it.
func TestJudge(t *testing.T) {
	for _, tt := range []struct {
		status  int
		body    string
		outcome Outcome
		reply   string
	}{
		{200, "250 OK", Delivered, "250 OK"},
		{200, "", Delivered, "250 OK"},
		{400, "523 Encryption Needed: Invalid Unencrypted Mail", Refused, "523 Encryption Needed: Invalid Unencrypted Mail"},
		{400, "554 5.7.1 No DKIM signature found", Refused, "554 5.7.1 No DKIM signature found"},
		{413, "552 Message exceeds maximum size", Refused, "552 Message exceeds maximum size"},
		{400, "451 4.7.5 DKIM key lookup failed, try again later", Deferred, "451 4.7.5 DKIM key lookup failed, try again later"},
		{503, "451 4.3.0 try again", Deferred, "451 4.3.0 try again"},
		{400, "550-5.1.1 first line\r\n550 5.1.1 second line\r\n", Refused, "550 5.1.1 first line 5.1.1 second line"},
		{404, "404 page not found", Unavailable, "HTTP 404 without an SMTP reply"},
		{405, "405 method not allowed", Unavailable, "HTTP 405 without an SMTP reply"},
		{404, "404 not found", Unavailable, "HTTP 404 without an SMTP reply"},
		{413, "452 4.3.1 odd", Unavailable, "HTTP 413 without an SMTP reply"},
		{502, "<html>Bad Gateway</html>", Unavailable, "HTTP 502 without an SMTP reply"},
		{500, "554 5.0.0 odd", Unavailable, "HTTP 500 without an SMTP reply"}, // a 5xx reply needs a 4xx status
		{400, "5230 no", Unavailable, "HTTP 400 without an SMTP reply"},
		{400, "123 no", Unavailable, "HTTP 400 without an SMTP reply"},
	} {
		got := judge(tt.status, tt.body)
		if got.Outcome != tt.outcome || got.Reply != tt.reply || got.Status != tt.status {
			t.Errorf("%d %q: %v %q, want %v %q", tt.status, tt.body, got.Outcome, got.Reply, tt.outcome, tt.reply)
		}
	}
}

func TestURLHost(t *testing.T) {
	for host, want := range map[string]string{
		"relay.example":      "relay.example",
		"192.0.2.1":          "192.0.2.1",
		"2001:db8::1":        "[2001:db8::1]",
		"[2001:db8::1]":      "[2001:db8::1]",
		"127.0.0.2:8443":     "127.0.0.2:8443",
		"[2001:db8::1]:8443": "[2001:db8::1]:8443",
	} {
		if got := urlHost(host); got != want {
			t.Errorf("urlHost(%q) = %q, want %q", host, got, want)
		}
	}
}

func FuzzOneLine(f *testing.F) {
	f.Add("550-5.1.1 a\r\n550 5.1.1 b\r\n")
	f.Add("250 OK")
	f.Fuzz(func(t *testing.T, s string) {
		out := oneLine(s)
		for _, r := range out {
			if r < ' ' || r == 0x7f {
				t.Fatalf("oneLine(%q) = %q holds a control byte", s, out)
			}
		}
	})
}
