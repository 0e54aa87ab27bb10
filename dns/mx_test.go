package dns_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// The mail exchangers of a domain, as delivery needs them: by preference,
// none for a domain without MX records, Null for a null MX, and not found
// for a domain that does not exist.
func TestLookupMX(t *testing.T) {
	srv, r := setup(t)
	srv.MX("relay.example", 20, "mx2.relay.example")
	srv.MX("relay.example", 10, "mx1.relay.example")
	srv.MX("relay.example", 20, "mx3.relay.example")
	srv.A("plain.example", "192.0.2.1")
	srv.MX("nomail.example", 0, ".")
	srv.MX("odd.example", 0, ".")
	srv.MX("odd.example", 10, "mx.odd.example")
	srv.MX("broken.example", 10, "mx.broken.example")
	srv.Rcode("broken.example", mdns.RcodeServerFailure)
	ctx := context.Background()

	mx, err := r.LookupMX(ctx, "relay.example")
	if err != nil || !slices.Equal(mx.Hosts, []string{"mx1.relay.example", "mx2.relay.example", "mx3.relay.example"}) || mx.Null {
		t.Errorf("relay.example: %+v, %v", mx, err)
	}
	if mx.TTL != 300*time.Second || mx.Authenticated {
		t.Errorf("relay.example: TTL %v, authenticated %v", mx.TTL, mx.Authenticated)
	}
	if mx, err := r.LookupMX(ctx, "plain.example"); err != nil || len(mx.Hosts) != 0 || mx.Null {
		t.Errorf("no MX records: %+v, %v; want no hosts and no error (implicit MX)", mx, err)
	}
	if mx, err := r.LookupMX(ctx, "nomail.example"); err != nil || !mx.Null || len(mx.Hosts) != 0 {
		t.Errorf("null MX: %+v, %v", mx, err)
	}
	if mx, err := r.LookupMX(ctx, "odd.example"); err != nil || mx.Null || !slices.Equal(mx.Hosts, []string{"mx.odd.example"}) {
		t.Errorf(`"." among other exchangers: %+v, %v`, mx, err)
	}
	var de *net.DNSError
	if _, err := r.LookupMX(ctx, "missing.example"); !errors.As(err, &de) || !de.IsNotFound || de.IsTemporary {
		t.Errorf("NXDOMAIN: %v, want not found", err)
	}
	if _, err := r.LookupMX(ctx, "broken.example"); !errors.As(err, &de) || !de.IsTemporary || de.IsNotFound {
		t.Errorf("SERVFAIL: %v, want temporary", err)
	}
	srv.Authenticated(true)
	if mx, err := r.LookupMX(ctx, "relay.example"); err != nil || !mx.Authenticated {
		t.Errorf("AD bit: %+v, %v", mx, err)
	}
}

// Both address families at once, IPv6 first, CNAMEs followed; a name
// without addresses is not found, a failing server a temporary error.
func TestLookupAddrs(t *testing.T) {
	srv, r := setup(t)
	srv.A("both.example", "192.0.2.1", "192.0.2.2")
	srv.AAAA("both.example", "2001:db8::1")
	srv.A("v4.example", "192.0.2.3")
	srv.AAAA("v6.example", "2001:db8::2")
	srv.MX("nothing.example", 10, "mx.example")
	srv.CNAME("alias.example", "v4.example")
	ctx := context.Background()

	for host, want := range map[string][]string{
		"both.example":  {"2001:db8::1", "192.0.2.1", "192.0.2.2"},
		"v4.example":    {"192.0.2.3"},
		"v6.example":    {"2001:db8::2"},
		"alias.example": {"192.0.2.3"},
	} {
		addrs, err := r.LookupAddrs(ctx, host)
		var got []string
		for _, ip := range addrs.IPs {
			got = append(got, ip.String())
		}
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("%s: %v, %v; want %v", host, got, err, want)
		}
	}
	var de *net.DNSError
	for _, host := range []string{"nothing.example", "missing.example"} {
		if _, err := r.LookupAddrs(ctx, host); !errors.As(err, &de) || !de.IsNotFound || de.IsTemporary {
			t.Errorf("%s: %v, want not found", host, err)
		}
	}
	srv.Rcode("both.example", mdns.RcodeServerFailure)
	if _, err := r.LookupAddrs(ctx, "both.example"); !errors.As(err, &de) || !de.IsTemporary {
		t.Errorf("SERVFAIL: %v, want temporary", err)
	}
	if addrs, err := r.LookupAddrs(ctx, "v4.example"); err != nil || addrs.IPs[0] != netip.MustParseAddr("192.0.2.3") {
		t.Errorf("v4.example: %+v, %v", addrs, err)
	}
}
