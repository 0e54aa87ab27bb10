package tlspolicy_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strings"
	"testing"

	mdns "github.com/miekg/dns"

	"filtermail/tlspolicy"
)

// What a connection to each MX host must have: DANE first where the MX
// answer was authenticated and usable records exist, then an enforced
// MTA-STS policy, then the caller's default.
func TestRequire(t *testing.T) {
	e := newEnv(t)
	cert := e.ca.mustIssue(t, "*.relay.example")
	spki := sha256.Sum256(cert.Leaf.RawSubjectPublicKeyInfo)
	e.publish("relay.example", "1", enforce)
	e.publish("testing.example", "1", "version: STSv1\nmode: testing\nmx: mx.testing.example\nmax_age: 86400\n")
	e.dns.TLSA("_25._tcp.mx1.relay.example", 3, 1, 1, spki[:])
	e.dns.AuthenticatedName("_25._tcp.mx1.relay.example", true)
	e.dns.TLSA("_25._tcp.a.mx.relay.example", 0, 1, 1, spki[:]) // PKIX only
	e.dns.AuthenticatedName("_25._tcp.a.mx.relay.example", true)
	e.dns.TLSA("_25._tcp.mx.broken.example", 3, 1, 1, spki[:])
	e.dns.Rcode("_25._tcp.mx.broken.example", mdns.RcodeServerFailure)
	e.dns.Rcode("_mta-sts.broken.example", mdns.RcodeServerFailure)

	tests := []struct {
		domain, host string
		mxAuth       bool
		source       tlspolicy.Source
		err          error // wrapped by the error, if any
		stsError     bool
	}{
		{domain: "relay.example", host: "mx1.relay.example", mxAuth: true, source: tlspolicy.SourceDANE},
		// The MX answer was not authenticated: no DANE, the policy applies.
		{domain: "relay.example", host: "mx1.relay.example", source: tlspolicy.SourceMTASTS},
		{domain: "relay.example", host: "a.mx.relay.example", mxAuth: true, source: tlspolicy.SourceMTASTS},
		{domain: "relay.example", host: "mx2.relay.example", mxAuth: true, source: tlspolicy.SourceMTASTS, err: tlspolicy.ErrNotInPolicy},
		{domain: "testing.example", host: "mx2.testing.example", source: tlspolicy.SourceNone},
		{domain: "plain.example", host: "mx.plain.example", mxAuth: true, source: tlspolicy.SourceNone},
		{domain: "broken.example", host: "mx.broken.example", mxAuth: true, source: tlspolicy.SourceNone, err: tlspolicy.ErrTemporary},
		{domain: "broken.example", host: "mx.broken.example", source: tlspolicy.SourceNone, stsError: true},
	}
	for _, tt := range tests {
		req, err := e.checker.Require(context.Background(), tt.domain, tt.mxAuth, tt.host)
		if req.Source != tt.source || (err == nil) != (tt.err == nil) || (tt.err != nil && !errors.Is(err, tt.err)) || (req.STSError != nil) != tt.stsError {
			t.Errorf("%s %s, MX authenticated %v: %+v, %v; want source %s, error %v", tt.domain, tt.host, tt.mxAuth, req, err, tt.source, tt.err)
		}
	}
	if got := e.log.String(); !strings.Contains(got, "mx2.testing.example is not among the MX hosts of the policy of testing.example, id 1, in testing mode") {
		t.Errorf("log: %q", got)
	}
}

// The TLS configuration of each requirement: DANE replaces WebPKI, the
// others keep the caller's.
func TestTLSConfig(t *testing.T) {
	e := newEnv(t)
	cert := e.ca.mustIssue(t, "mx.relay.example")
	base := &tls.Config{RootCAs: e.ca.pool(), ServerName: "other"}

	for _, source := range []tlspolicy.Source{tlspolicy.SourceNone, tlspolicy.SourceMTASTS} {
		cfg := tlspolicy.Requirement{Source: source}.TLSConfig(base, "mx.relay.example.")
		if cfg == base || cfg.ServerName != "mx.relay.example" || cfg.InsecureSkipVerify {
			t.Errorf("%s: %+v", source, cfg)
		}
		if _, err := handshake(t, cert, cfg); err != nil {
			t.Errorf("%s: %v", source, err)
		}
		if _, err := handshake(t, cert, tlspolicy.Requirement{Source: source}.TLSConfig(base, "mx2.relay.example")); err == nil {
			t.Errorf("%s: a certificate for another name passed", source)
		}
	}
	if base.ServerName != "other" {
		t.Errorf("base changed")
	}

	// DANE-EE: neither the CA nor the name matter.
	spki := sha256.Sum256(cert.Leaf.RawSubjectPublicKeyInfo)
	e.dns.TLSA("_25._tcp.mx.relay.example", 3, 1, 1, spki[:])
	e.dns.AuthenticatedName("_25._tcp.mx.relay.example", true)
	req, err := e.checker.Require(context.Background(), "relay.example", true, "mx.relay.example")
	if err != nil || req.Source != tlspolicy.SourceDANE {
		t.Fatalf("%+v, %v", req, err)
	}
	cfg := req.TLSConfig(&tls.Config{VerifyPeerCertificate: func([][]byte, [][]*x509.Certificate) error { return errors.New("called") }}, "mx.relay.example")
	if !cfg.InsecureSkipVerify || cfg.MinVersion != tls.VersionTLS12 || cfg.ServerName != "mx.relay.example" {
		t.Errorf("DANE: %+v", cfg)
	}
	if _, err := handshake(t, cert, cfg); err != nil {
		t.Errorf("DANE: %v", err)
	}
	if _, err := handshake(t, e.ca.mustIssue(t, "mx.relay.example"), cfg); err == nil {
		t.Errorf("DANE: another key passed")
	}
}
