package tlspolicy_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/mjl-/mox/dane"

	"filtermail/tlspolicy"
)

// handshake makes a TLS handshake on loopback with a server that presents
// cert, as a client configured with cfg, and returns the client's state.
func handshake(t *testing.T, cert tls.Certificate, cfg *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	served := make(chan struct{})
	go func() {
		defer close(served)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		s := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
		if s.Handshake() == nil {
			io.Copy(io.Discard, s)
		}
	}()
	defer func() { <-served }()
	conn, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	c := tls.Client(conn, cfg)
	if err := c.Handshake(); err != nil {
		return tls.ConnectionState{}, err
	}
	return c.ConnectionState(), c.Close()
}

type record struct {
	usage, selector, matching uint8
	data                      []byte
}

// DANE as RFC 7672 says: DNSSEC-authenticated TLSA records of usage
// DANE-EE or DANE-TA, checked against a real handshake's certificate.
func TestDANE(t *testing.T) {
	e := newEnv(t)
	cert := e.ca.mustIssue(t, "*.relay.example")
	leaf := cert.Leaf
	spki256 := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	cert256 := sha256.Sum256(leaf.Raw)
	spki512 := sha512.Sum512(leaf.RawSubjectPublicKeyInfo)
	ca256 := sha256.Sum256(e.ca.ca.Cert.Raw)
	wrong := sha256.Sum256([]byte("another key"))

	tests := []struct {
		name     string
		records  []record
		insecure bool   // the answer without the AD bit
		host     string // the MX host verified, if not the one looked up
		usable   bool
		verifies bool
	}{
		{name: "DANE-EE SPKI SHA-256", records: []record{{3, 1, 1, spki256[:]}}, usable: true, verifies: true},
		{name: "DANE-EE certificate SHA-256", records: []record{{3, 0, 1, cert256[:]}}, usable: true, verifies: true},
		{name: "DANE-EE SPKI SHA-512", records: []record{{3, 1, 2, spki512[:]}}, usable: true, verifies: true},
		{name: "DANE-EE SPKI full", records: []record{{3, 1, 0, leaf.RawSubjectPublicKeyInfo}}, usable: true, verifies: true},
		{name: "DANE-EE wrong hash", records: []record{{3, 1, 1, wrong[:]}}, usable: true},
		{name: "DANE-EE one of two", records: []record{{3, 1, 1, wrong[:]}, {3, 1, 1, spki256[:]}}, usable: true, verifies: true},
		{name: "DANE-EE another name", records: []record{{3, 1, 1, spki256[:]}}, host: "mx.other.example", usable: true, verifies: true},
		{name: "DANE-TA CA SHA-256", records: []record{{2, 0, 1, ca256[:]}}, usable: true, verifies: true},
		{name: "DANE-TA another name", records: []record{{2, 0, 1, ca256[:]}}, host: "mx.other.example", usable: true},
		{name: "DANE-TA wrong hash", records: []record{{2, 0, 1, wrong[:]}}, usable: true},
		{name: "PKIX only", records: []record{{0, 0, 1, ca256[:]}, {1, 1, 1, spki256[:]}}},
		{name: "PKIX among usable", records: []record{{1, 1, 1, spki256[:]}, {3, 1, 1, wrong[:]}}, usable: true},
		{name: "unknown parameters", records: []record{{4, 1, 1, spki256[:]}, {3, 2, 1, spki256[:]}, {3, 1, 3, spki256[:]}, {3, 1, 1, spki256[:31]}, {3, 1, 0, nil}}},
		{name: "unauthenticated", records: []record{{3, 1, 1, spki256[:]}}, insecure: true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host := fmt.Sprintf("mx%d.relay.example", i)
			name := "_25._tcp." + host
			for _, r := range tt.records {
				e.dns.TLSA(name, r.usage, r.selector, r.matching, r.data)
			}
			e.dns.AuthenticatedName(name, !tt.insecure)
			d, err := e.checker.DANE(context.Background(), host+".")
			if err != nil || d.Usable() != tt.usable {
				t.Fatalf("DANE: usable %v, %v; want usable %v", d.Usable(), err, tt.usable)
			}
			if tt.host != "" {
				host = tt.host
			}
			state, err := handshake(t, cert, &tls.Config{InsecureSkipVerify: true})
			if err != nil {
				t.Fatal(err)
			}
			err = d.Verify(state, host)
			if (err == nil) != tt.verifies {
				t.Errorf("Verify: %v, want verified %v", err, tt.verifies)
			}
			if err != nil && !tt.usable && !strings.Contains(err.Error(), "no usable TLSA records") {
				t.Errorf("Verify without records: %v", err)
			}
			if err != nil && tt.usable && !errors.Is(err, dane.ErrNoMatch) {
				t.Errorf("Verify: %v, want dane.ErrNoMatch", err)
			}
			// As the transport uses it: the handshake fails.
			req := tlspolicy.Requirement{Source: tlspolicy.SourceDANE, DANE: d}
			if _, err := handshake(t, cert, req.TLSConfig(nil, host)); (err == nil) != tt.verifies {
				t.Errorf("handshake: %v, want success %v", err, tt.verifies)
			}
		})
	}
}

// No TLSA records is no DANE; a lookup that fails is an error.
func TestDANELookup(t *testing.T) {
	e := newEnv(t)
	e.dns.Authenticated(true)
	e.dns.A("_25._tcp.mx.nodata.example", "192.0.2.1") // a name without TLSA records
	e.dns.TLSA("_25._tcp.mx.broken.example", 3, 1, 1, bytes.Repeat([]byte{1}, 32))
	e.dns.Rcode("_25._tcp.mx.broken.example", mdns.RcodeServerFailure)
	e.dns.TLSA("_25._tcp.mx.refused.example", 3, 1, 1, bytes.Repeat([]byte{1}, 32))
	e.dns.Rcode("_25._tcp.mx.refused.example", mdns.RcodeNotImplemented)
	ctx := context.Background()

	for _, host := range []string{"mx.missing.example", "mx.nodata.example"} {
		if d, err := e.checker.DANE(ctx, host); err != nil || d.Usable() {
			t.Errorf("%s: usable %v, %v; want no records, no error", host, d.Usable(), err)
		}
	}
	d, err := e.checker.DANE(ctx, "mx.broken.example")
	if err == nil || !isTemporary(err) || d.Usable() || !strings.Contains(err.Error(), "_25._tcp.mx.broken.example") {
		t.Errorf("SERVFAIL: usable %v, %v; want a temporary error", d.Usable(), err)
	}
	if _, err := e.checker.DANE(ctx, "mx.refused.example"); err == nil || isTemporary(err) {
		t.Errorf("NOTIMP: %v; want an error, not temporary", err)
	}
	var zero tlspolicy.DANE
	if zero.Usable() || zero.Verify(tls.ConnectionState{}, "mx.example") == nil {
		t.Errorf("the zero DANE is usable or verifies")
	}
}
