package transport_test

import (
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"filtermail/internal/relaytest"
	"filtermail/internal/testnet"
	"filtermail/transport"
)

// What DNS says of a domain decides before any relay is asked: a domain
// that takes no mail or does not exist bounces, trouble is tried again.
func TestDNSRules(t *testing.T) {
	w := newWorld(t)
	w.dns.MX("null.example", 0, ".")
	w.dns.Rcode("servfail.example", mdns.RcodeServerFailure)
	for _, tt := range []struct{ rcpt, want string }{
		{"bob@null.example", "556 5.1.10"},
		{"bob@nxdomain.example", "550 5.1.2"},
		{"bob@servfail.example", "451 4.4.3"},
	} {
		got := w.send(alice, []string{tt.rcpt}, message(alice, tt.rcpt))
		if !has(got[tt.rcpt], tt.want) {
			t.Errorf("%s: %q, want %s", tt.rcpt, got[tt.rcpt], tt.want)
		}
	}
}

// A domain without MX records is its own mail exchanger.
func TestImplicitMX(t *testing.T) {
	w := newWorld(t)
	host := testnet.Host(t)
	w.dns.A("implicit.example", host)
	cert, err := ca.Certificate("implicit.example")
	if err != nil {
		t.Fatal(err)
	}
	h := relaytest.StartHTTPS(t, host, cert)
	rcpt := "bob@implicit.example"
	if got := w.send(alice, []string{rcpt}, message(alice, rcpt)); !has(got[rcpt], "250", "(HTTPS)") {
		t.Fatalf("reply %q", got[rcpt])
	}
	if len(h.Requests()) != 1 {
		t.Error("the domain's own host was not asked")
	}
}

// The most preferred MX is asked first; the next one only when the first
// cannot be reached at all, not when it answers.
func TestNextMXOnlyAfterConnectionFailure(t *testing.T) {
	w := newWorld(t)
	down := testnet.Host(t) // nothing listens there
	w.dns.MX("other.example", 5, "mx0.other.example")
	w.dns.A("mx0.other.example", down)
	r := w.relay("other.example") // mx.other.example, preference 10
	if got := w.send(alice, []string{bob}, message(alice, bob)); !has(got[bob], "250", "(HTTPS)") {
		t.Fatalf("with the first MX down: %q", got[bob])
	}

	// The first MX answers with a refusal: that is final.
	w2 := newWorld(t)
	first := w2.relay("second.example")
	first.https.Reply(400, "550 5.1.1 No such user")
	w2.dns.MX("second.example", 20, "mx2.second.example")
	w2.dns.A("mx2.second.example", r.host)
	rcpt := "bob@second.example"
	if got := w2.send(alice, []string{rcpt}, message(alice, rcpt)); !has(got[rcpt], "550 5.1.1") {
		t.Fatalf("refused by the first MX: %q", got[rcpt])
	}
	if n := len(r.https.Requests()); n != 1 {
		t.Errorf("the second MX was asked after a refusal by the first")
	}
}

// A relay that cannot be reached on any channel is tried again later.
func TestNoRelayReachable(t *testing.T) {
	w := newWorld(t)
	w.dns.MX("other.example", 10, "mx.other.example")
	w.dns.A("mx.other.example", testnet.Host(t))
	got := w.send(alice, []string{bob}, message(alice, bob))
	if !has(got[bob], "451 4.4.1") {
		t.Errorf("reply %q, want 451 4.4.1", got[bob])
	}
}

// SMTP needs STARTTLS and a certificate that verifies against the MX
// name; without, the mail waits.
func TestSMTPRequiresVerifiedTLS(t *testing.T) {
	self, err := relaytest.SelfSigned("mx.other.example")
	if err != nil {
		t.Fatal(err)
	}
	wrong, err := ca.Certificate("mx.elsewhere.example")
	if err != nil {
		t.Fatal(err)
	}
	expired, err := ca.Expired("mx.other.example")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		o    relayOptions
		want string
	}{
		{"no STARTTLS", relayOptions{noHTTPS: true, noSTARTTLS: true}, "451 4.7.4"},
		{"self-signed", relayOptions{noHTTPS: true, cert: &self}, "451 4.7.5"},
		{"wrong name", relayOptions{noHTTPS: true, cert: &wrong}, "451 4.7.5"},
		{"expired", relayOptions{noHTTPS: true, cert: &expired}, "451 4.7.5"},
		// HTTPS with a bad certificate is no channel either.
		{"self-signed HTTPS", relayOptions{noSTARTTLS: true, cert: &self}, "451 4.7.4"},
	} {
		w := newWorld(t)
		r := w.relayWith("other.example", tt.o)
		got := w.send(alice, []string{bob}, message(alice, bob))
		if !has(got[bob], tt.want) {
			t.Errorf("%s: %q, want %s", tt.name, got[bob], tt.want)
		}
		if n := len(r.smtp.Messages()); n != 0 {
			t.Errorf("%s: delivered anyway", tt.name)
		}
	}
}

// Test relays ("_…" domains) and IP literals have self-signed
// certificates: they are not verified.
func TestUnverifiedDestinations(t *testing.T) {
	w := newWorld(t)
	self, err := relaytest.SelfSigned("mx._test.example")
	if err != nil {
		t.Fatal(err)
	}
	r := w.relayWith("_test.example", relayOptions{cert: &self})
	rcpt := "bob@_test.example"
	if got := w.send(alice, []string{rcpt}, message(alice, rcpt)); !has(got[rcpt], "250", "(HTTPS)") {
		t.Errorf("_ domain over HTTPS: %q", got[rcpt])
	}
	r.https.Close()
	if got := w.send(alice, []string{rcpt}, message(alice, rcpt)); !has(got[rcpt], "250", "(SMTP)") {
		t.Errorf("_ domain over SMTP: %q", got[rcpt])
	}

	host := testnet.Host(t)
	ipSelf, err := relaytest.SelfSigned(host)
	if err != nil {
		t.Fatal(err)
	}
	h := relaytest.StartHTTPS(t, host, ipSelf)
	lit := "bob@[" + host + "]"
	if got := w.send(alice, []string{lit}, message(alice, lit)); !has(got[lit], "250", "(HTTPS)") {
		t.Errorf("IP literal: %q", got[lit])
	}
	if len(h.Requests()) != 1 {
		t.Error("the IP literal's host was not asked")
	}
}

// Recipients of several domains: one delivery per domain, all at once,
// each recipient answered with its domain's outcome.
func TestDomainsInParallel(t *testing.T) {
	w := newWorld(t)
	transport.SetDeliveryTimeout(w.tr, 2*time.Second)
	a := w.relay("a.example")
	b := w.relay("b.example")
	b.https.Reply(400, "523 Encryption Needed: Invalid Unencrypted Mail")
	// c.example stalls: the others do not wait for it to be answered.
	c := w.relay("c.example")
	c.https.Stall()
	c.smtp.StallGreeting()
	rcpts := []string{"x@a.example", "y@b.example", "z@c.example", "v@a.example"}
	got := w.send(alice, rcpts, message(alice, "x@a.example"))
	for rcpt, want := range map[string]string{
		"x@a.example": "250", "v@a.example": "250",
		"y@b.example": "523",
		"z@c.example": "451",
	} {
		if !has(got[rcpt], want) {
			t.Errorf("%s: %q, want %s", rcpt, got[rcpt], want)
		}
	}
	if n := len(a.https.Requests()); n != 1 {
		t.Errorf("a.example got %d requests, want 1 for both its recipients", n)
	}
}

// An internationalized domain is looked up by its ASCII form; the
// recipient goes out as Postfix gave it.
func TestInternationalizedDomain(t *testing.T) {
	w := newWorld(t)
	r := w.relay("xn--bcher-kva.example")
	rcpt := "bob@bücher.example"
	if got := w.send(alice, []string{rcpt}, message(alice, rcpt)); !has(got[rcpt], "250", "(HTTPS)") {
		t.Fatalf("reply %q", got[rcpt])
	}
	if reqs := r.https.Requests(); len(reqs) != 1 || reqs[0].To[0] != rcpt {
		t.Errorf("the relay got %+v", reqs)
	}
}
