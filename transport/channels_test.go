package transport_test

import (
	"bytes"
	"slices"
	"testing"
)

const (
	alice = "alice@relay.example"
	bob   = "bob@other.example"
	carol = "carol@other.example"
)

// A relay that answers POST /mxdeliv gets the mail over HTTPS, envelope
// and bytes unchanged; its SMTP server is not asked.
func TestHTTPSDelivers(t *testing.T) {
	w := newWorld(t)
	r := w.relay("other.example")
	msg := message(alice, bob)
	got := w.send(alice, []string{bob, carol}, msg)
	for _, rcpt := range []string{bob, carol} {
		if !has(got[rcpt], "250 2.0.0", "OK (HTTPS)") {
			t.Errorf("%s: %q, want 250 … (HTTPS)", rcpt, got[rcpt])
		}
	}
	reqs := r.https.Requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want one for both recipients", len(reqs))
	}
	if reqs[0].From != alice || !slices.Equal(reqs[0].To, []string{bob, carol}) || !bytes.Equal(reqs[0].Body, []byte(msg)) {
		t.Errorf("relay got from %q to %q body %q", reqs[0].From, reqs[0].To, reqs[0].Body)
	}
	if n := r.smtp.Transactions(); n != 0 {
		t.Errorf("SMTP saw %d transactions", n)
	}
}

// A bounce (MAIL FROM:<>) goes out with an empty sender on both channels.
func TestNullSender(t *testing.T) {
	w := newWorld(t)
	r := w.relay("other.example")
	if got := w.send("", []string{bob}, message("mailer-daemon@relay.example", bob)); !has(got[bob], "(HTTPS)") {
		t.Fatalf("over HTTPS: %q", got[bob])
	}
	if from := r.https.Requests()[0].From; from != "" {
		t.Errorf("X-Mail-From %q, want empty", from)
	}
	r.https.Reply(404, "not found")
	if got := w.send("", []string{bob}, message("mailer-daemon@relay.example", bob)); !has(got[bob], "(SMTP)") {
		t.Fatalf("over SMTP: %q", got[bob])
	}
	if m := r.smtp.Messages(); len(m) != 1 || m[0].From != "" {
		t.Errorf("SMTP messages %+v, want one from <>", m)
	}
}

// What /mxdeliv answers is the verdict: a refusal bounces and a deferral
// is tried again later, neither is sent over SMTP.
func TestHTTPSVerdictIsFinal(t *testing.T) {
	for _, tt := range []struct {
		status int
		body   string
		want   string
	}{
		{400, "523 Encryption Needed: Invalid Unencrypted Mail", "523 5.0.0 Encryption Needed: Invalid Unencrypted Mail (HTTPS)"},
		{400, "554 5.7.1 No valid DKIM signature found", "554 5.7.1 No valid DKIM signature found (HTTPS)"},
		{413, "552 Message exceeds maximum size", "552 5.0.0 Message exceeds maximum size (HTTPS)"},
		{400, "451 4.7.5 DKIM key lookup failed, try again later", "451 4.7.5 DKIM key lookup failed, try again later (HTTPS)"},
		{500, "451 4.3.0 Reinjection failed", "451 4.3.0 Reinjection failed (HTTPS)"},
	} {
		w := newWorld(t)
		r := w.relay("other.example")
		r.https.Reply(tt.status, tt.body)
		got := w.send(alice, []string{bob}, message(alice, bob))
		if !has(got[bob], tt.want) {
			t.Errorf("%d %q: reply %q, want %q", tt.status, tt.body, got[bob], tt.want)
		}
		if n := r.smtp.Transactions(); n != 0 {
			t.Errorf("%d %q: sent over SMTP too", tt.status, tt.body)
		}
	}
}

// A relay without /mxdeliv (404) gets the mail over SMTP with STARTTLS,
// byte for byte; it is then sent SMTP only for a while.
func TestSMTPWhenNoHTTPS(t *testing.T) {
	w := newWorld(t)
	r := w.relay("other.example")
	r.https.Reply(404, "404 page not found")
	msg := message(alice, bob)
	for i := range 2 {
		got := w.send(alice, []string{bob}, msg)
		if !has(got[bob], "250 2.0.0", "(SMTP)") {
			t.Fatalf("message %d: %q, want 250 … (SMTP)", i, got[bob])
		}
	}
	if n := len(r.https.Requests()); n != 1 {
		t.Errorf("HTTPS asked %d times, want once: then SMTP only", n)
	}
	msgs := r.smtp.Messages()
	if len(msgs) != 2 {
		t.Fatalf("%d messages over SMTP, want 2", len(msgs))
	}
	m := msgs[0]
	if !m.TLS || m.From != alice || !slices.Equal(m.To, []string{bob}) || string(m.Data) != msg {
		t.Errorf("SMTP got TLS %v from %q to %q data %q", m.TLS, m.From, m.To, m.Data)
	}
	if msgs[1].Conn != msgs[0].Conn || r.smtp.Resets() < 1 {
		t.Errorf("second message on connection %d after %d RSETs, want the first connection again after RSET", msgs[1].Conn, r.smtp.Resets())
	}
}

// A relay whose port 443 is closed gets the mail over SMTP.
func TestSMTPWhenHTTPSRefusesConnections(t *testing.T) {
	w := newWorld(t)
	r := w.relayWith("other.example", relayOptions{noHTTPS: true})
	if got := w.send(alice, []string{bob}, message(alice, bob)); !has(got[bob], "250", "(SMTP)") {
		t.Fatalf("reply %q", got[bob])
	}
	if len(r.smtp.Messages()) != 1 {
		t.Error("not delivered over SMTP")
	}
}

// Over SMTP each recipient gets its own reply; a multi-line reply is one
// line.
func TestSMTPPerRecipient(t *testing.T) {
	w := newWorld(t)
	r := w.relayWith("other.example", relayOptions{noHTTPS: true})
	r.smtp.RcptReply(carol, "550-5.1.1 No such user\r\n550 5.1.1 here")
	got := w.send(alice, []string{bob, carol}, message(alice, bob))
	if !has(got[bob], "250") {
		t.Errorf("bob: %q", got[bob])
	}
	if !has(got[carol], "550 5.1.1", "No such user here (SMTP)") {
		t.Errorf("carol: %q, want 550 5.1.1 … on one line", got[carol])
	}
	r.smtp.DataReply("451-4.3.0 Temporary\r\n451-4.3.0 trouble\r\n451 4.3.0 here")
	got = w.send(alice, []string{bob}, message(alice, bob))
	if !has(got[bob], "451 4.3.0", "Temporary trouble here (SMTP)") {
		t.Errorf("bob: %q, want 451 4.3.0 … on one line", got[bob])
	}
}

// A server that answers 421 ends its session: the connection is not used
// again, and the next one resumes the TLS session.
func TestSMTPClosingReply(t *testing.T) {
	w := newWorld(t)
	r := w.relayWith("other.example", relayOptions{noHTTPS: true})
	r.smtp.DataReply("421 4.3.0 Closing")
	if got := w.send(alice, []string{bob}, message(alice, bob)); !has(got[bob], "451 4.3.0 Closing (SMTP)") {
		t.Fatalf("reply %q, want 451 4.3.0 Closing (SMTP)", got[bob])
	}
	r.smtp.DataReply("")
	if got := w.send(alice, []string{bob}, message(alice, bob)); !has(got[bob], "250") {
		t.Fatalf("reply %q", got[bob])
	}
	msgs := r.smtp.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	if n := r.smtp.Connections(); n != 2 {
		t.Errorf("%d connections, want a new one after the 421", n)
	}
	if !msgs[0].Resumed {
		t.Error("the second connection did not resume the TLS session")
	}
}
