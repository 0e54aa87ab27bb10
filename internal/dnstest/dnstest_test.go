package dnstest_test

import (
	"testing"

	mdns "github.com/miekg/dns"

	"filtermail/internal/dnstest"
)

func ask(t *testing.T, srv *dnstest.Server, network, name string, qtype uint16) *mdns.Msg {
	t.Helper()
	q := new(mdns.Msg)
	q.SetQuestion(mdns.Fqdn(name), qtype)
	c := &mdns.Client{Net: network}
	r, _, err := c.Exchange(q, srv.Addr())
	if err != nil {
		t.Fatalf("%s %s %s: %v", network, name, mdns.TypeToString[qtype], err)
	}
	return r
}

func TestRecords(t *testing.T) {
	srv := dnstest.Start(t)
	srv.A("mx.example.org", "192.0.2.1", "192.0.2.2")
	srv.AAAA("mx.example.org", "2001:db8::1")
	srv.MX("example.org", 10, "mx.example.org")
	srv.MX("example.org", 20, "mx2.example.org")
	for _, network := range []string{"udp", "tcp"} {
		if r := ask(t, srv, network, "mx.example.org", mdns.TypeA); len(r.Answer) != 2 {
			t.Errorf("%s A: %v", network, r.Answer)
		}
		if r := ask(t, srv, network, "mx.example.org", mdns.TypeAAAA); len(r.Answer) != 1 {
			t.Errorf("%s AAAA: %v", network, r.Answer)
		}
		r := ask(t, srv, network, "example.org", mdns.TypeMX)
		if len(r.Answer) != 2 || r.Answer[0].(*mdns.MX).Preference != 10 || r.Answer[1].(*mdns.MX).Mx != "mx2.example.org." {
			t.Errorf("%s MX: %v", network, r.Answer)
		}
		if r := ask(t, srv, network, "example.org", mdns.TypeTXT); r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 0 {
			t.Errorf("%s NODATA: %v", network, r)
		}
	}
	srv.A("mx.example.org", "192.0.2.3")
	if r := ask(t, srv, "udp", "mx.example.org", mdns.TypeA); len(r.Answer) != 1 {
		t.Errorf("A after replacing: %v", r.Answer)
	}
	srv.Remove("mx.example.org")
	if r := ask(t, srv, "udp", "mx.example.org", mdns.TypeA); r.Rcode != mdns.RcodeNameError {
		t.Errorf("after Remove: %v", r)
	}
	if n := srv.Queries("MX.example.org."); n != 6 {
		t.Errorf("%d queries for mx.example.org, want 6", n)
	}
}

func TestRcode(t *testing.T) {
	srv := dnstest.Start(t)
	srv.TXT("example.org", "x")
	srv.Rcode("example.org", mdns.RcodeServerFailure)
	if r := ask(t, srv, "udp", "example.org", mdns.TypeTXT); r.Rcode != mdns.RcodeServerFailure {
		t.Errorf("rcode %d", r.Rcode)
	}
	srv.Rcode("example.org", mdns.RcodeSuccess)
	if r := ask(t, srv, "udp", "example.org", mdns.TypeTXT); r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 1 {
		t.Errorf("after clearing: %v", r)
	}
}

func TestTruncate(t *testing.T) {
	srv := dnstest.Start(t)
	srv.TXT("example.org", "x")
	srv.Truncate("example.org")
	if r := ask(t, srv, "udp", "example.org", mdns.TypeTXT); !r.Truncated || len(r.Answer) != 0 {
		t.Errorf("UDP: %v", r)
	}
	if r := ask(t, srv, "tcp", "example.org", mdns.TypeTXT); r.Truncated || len(r.Answer) != 1 {
		t.Errorf("TCP: %v", r)
	}
}

func TestManyServers(t *testing.T) {
	// Each server has its own port for UDP and TCP.
	seen := map[string]bool{}
	for range 20 {
		srv := dnstest.Start(t)
		if seen[srv.Addr()] {
			t.Fatalf("%s handed out twice", srv.Addr())
		}
		seen[srv.Addr()] = true
		srv.TXT("example.org", "x")
		ask(t, srv, "tcp", "example.org", mdns.TypeTXT)
	}
}

func TestTLSA(t *testing.T) {
	srv := dnstest.Start(t)
	data := []byte{0x00, 0x5c, 0xff, 0x10}
	srv.TLSA("_25._tcp.mx.example.org", 3, 1, 1, data)
	srv.TLSA("_25._tcp.mx.example.org", 2, 0, 2, []byte{1})
	for _, network := range []string{"udp", "tcp"} {
		r := ask(t, srv, network, "_25._tcp.mx.example.org", mdns.TypeTLSA)
		if len(r.Answer) != 2 {
			t.Fatalf("%s TLSA: %v", network, r.Answer)
		}
		rr := r.Answer[0].(*mdns.TLSA)
		if rr.Usage != 3 || rr.Selector != 1 || rr.MatchingType != 1 || rr.Certificate != "005cff10" {
			t.Errorf("%s TLSA: %v", network, rr)
		}
		if rr := r.Answer[1].(*mdns.TLSA); rr.Usage != 2 || rr.Selector != 0 || rr.MatchingType != 2 || rr.Certificate != "01" {
			t.Errorf("%s second TLSA: %v", network, rr)
		}
	}
}

// The AD bit of one name, against the server's setting either way; it
// makes no name exist.
func TestAuthenticatedName(t *testing.T) {
	srv := dnstest.Start(t)
	srv.TXT("signed.example", "x")
	srv.TXT("plain.example", "x")
	srv.AuthenticatedName("signed.example", true)
	srv.AuthenticatedName("missing.example", true)
	if r := ask(t, srv, "udp", "signed.example", mdns.TypeTXT); !r.AuthenticatedData {
		t.Errorf("signed.example: AD not set")
	}
	if r := ask(t, srv, "udp", "plain.example", mdns.TypeTXT); r.AuthenticatedData {
		t.Errorf("plain.example: AD set")
	}
	if r := ask(t, srv, "udp", "missing.example", mdns.TypeTXT); r.Rcode != mdns.RcodeNameError || !r.AuthenticatedData {
		t.Errorf("missing.example: %v", r)
	}
	srv.Authenticated(true)
	srv.AuthenticatedName("plain.example", false)
	if r := ask(t, srv, "udp", "plain.example", mdns.TypeTXT); r.AuthenticatedData {
		t.Errorf("plain.example under an authenticating server: AD set")
	}
	if r := ask(t, srv, "udp", "signed.example", mdns.TypeTXT); !r.AuthenticatedData {
		t.Errorf("signed.example under an authenticating server: AD not set")
	}
	srv.Remove("plain.example")
	srv.TXT("plain.example", "x")
	if r := ask(t, srv, "udp", "plain.example", mdns.TypeTXT); !r.AuthenticatedData {
		t.Errorf("plain.example after Remove: AD of the name kept")
	}
}
