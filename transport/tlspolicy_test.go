package transport_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"filtermail/internal/relaytest"
	"filtermail/internal/testnet"
)

// servePolicy publishes an MTA-STS policy for domain: the TXT record and
// https://mta-sts.<domain>/.well-known/mta-sts.txt on a host of its own.
func (w *world) servePolicy(domain, policy string) {
	w.t.Helper()
	host := testnet.Host(w.t)
	name := "mta-sts." + domain
	w.dns.A(name, host)
	w.dns.TXT("_mta-sts."+domain, "v=STSv1; id=20261201")
	cert, err := ca.Certificate(name)
	if err != nil {
		w.t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", net.JoinHostPort(host, "443"), &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		w.t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/.well-known/mta-sts.txt" {
				http.NotFound(rw, r)
				return
			}
			rw.Header().Set("Content-Type", "text/plain")
			rw.Write([]byte(policy))
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	w.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			w.t.Errorf("policy server: %v", err)
		}
	})
}

// An MTA-STS policy in enforce mode: a listed MX gets the mail; one the
// policy does not list gets nothing, over either channel.
func TestMTASTS(t *testing.T) {
	w := newWorld(t)
	r := w.relay("other.example")
	w.servePolicy("other.example", "version: STSv1\r\nmode: enforce\r\nmx: mx.other.example\r\nmax_age: 86400\r\n")
	if got := w.send(alice, []string{bob}, message(alice, bob)); !has(got[bob], "250", "(HTTPS)") || len(r.https.Requests()) != 1 {
		t.Errorf("listed MX: %q", got[bob])
	}

	w2 := newWorld(t)
	r2 := w2.relay("other.example")
	w2.servePolicy("other.example", "version: STSv1\r\nmode: enforce\r\nmx: *.mail.other.example\r\nmax_age: 86400\r\n")
	if got := w2.send(alice, []string{bob}, message(alice, bob)); !has(got[bob], "451 4.7.0", "MTA-STS") {
		t.Errorf("MX not in the policy: %q, want 451 4.7.0", got[bob])
	}
	if len(r2.https.Requests()) != 0 || r2.smtp.Transactions() != 0 {
		t.Error("a host the policy does not list was sent the mail")
	}
}

// spki is the SHA-256 of a certificate's public key: a DANE-EE record's
// data with selector SPKI and matching type SHA-256.
func spki(t *testing.T, cert tls.Certificate) []byte {
	t.Helper()
	c, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return sum[:]
}

// Where the MX answer is DNSSEC-authenticated and TLSA records exist, the
// SMTP server's certificate must match them, and then needs no CA.
func TestDANE(t *testing.T) {
	self, err := relaytest.SelfSigned("mx.other.example")
	if err != nil {
		t.Fatal(err)
	}
	other, err := relaytest.SelfSigned("mx.other.example")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name   string
		record []byte
		want   string
	}{
		{"matching", spki(t, self), "250"},
		{"not matching", spki(t, other), "451 4.7.5"},
	} {
		w := newWorld(t)
		r := w.relayWith("other.example", relayOptions{cert: &self})
		w.dns.AuthenticatedName("other.example", true)
		w.dns.AuthenticatedName("_25._tcp.mx.other.example", true)
		w.dns.TLSA("_25._tcp.mx.other.example", 3, 1, 1, tt.record)
		got := w.send(alice, []string{bob}, message(alice, bob))
		if !has(got[bob], tt.want) {
			t.Errorf("%s: %q, want %s", tt.name, got[bob], tt.want)
		}
		if tt.want == "250" {
			if !has(got[bob], "(SMTP)") || len(r.smtp.Messages()) != 1 {
				t.Errorf("%s: not delivered over SMTP: %q", tt.name, got[bob])
			}
			if n := w.value("filtermail_transport_smtp_sessions_total", "tls_policy", "dane"); n != 1 {
				t.Errorf("smtp_sessions_total{dane} = %v, want 1", n)
			}
		}
	}
}
