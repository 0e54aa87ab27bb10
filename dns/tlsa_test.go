package dns_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// TLSA records as DANE needs them: the parameters and the data as served,
// the AD bit, NODATA as no records, NXDOMAIN as not found, SERVFAIL as
// temporary.
func TestLookupTLSA(t *testing.T) {
	srv, r := setup(t)
	sum := bytes.Repeat([]byte{0xab}, 32)
	srv.TLSA("_25._tcp.mx.example.org", 3, 1, 1, sum)
	srv.TLSA("_25._tcp.mx.example.org", 2, 0, 0, []byte{0x30, 0x82, 0x00})
	srv.A("mx.example.org", "192.0.2.1")
	srv.TLSA("_25._tcp.broken.example.org", 3, 1, 1, sum)
	srv.Rcode("_25._tcp.broken.example.org", mdns.RcodeServerFailure)
	srv.CNAME("_25._tcp.alias.example.org", "_25._tcp.mx.example.org")
	ctx := context.Background()

	tlsa, err := r.LookupTLSA(ctx, "_25._tcp.mx.example.org")
	if err != nil || len(tlsa.Records) != 2 {
		t.Fatalf("mx.example.org: %+v, %v", tlsa, err)
	}
	if got := tlsa.Records[0]; got.Usage != 3 || got.Selector != 1 || got.MatchingType != 1 || !bytes.Equal(got.Data, sum) {
		t.Errorf("first record: %+v", got)
	}
	if got := tlsa.Records[1]; got.Usage != 2 || got.Selector != 0 || got.MatchingType != 0 || !bytes.Equal(got.Data, []byte{0x30, 0x82, 0x00}) {
		t.Errorf("second record: %+v", got)
	}
	if tlsa.TTL != 300*time.Second || tlsa.Authenticated {
		t.Errorf("TTL %v, authenticated %v", tlsa.TTL, tlsa.Authenticated)
	}
	if tlsa, err := r.LookupTLSA(ctx, "_25._tcp.alias.example.org"); err != nil || len(tlsa.Records) != 2 {
		t.Errorf("through a CNAME: %+v, %v", tlsa, err)
	}
	// The name exists with other records: NODATA.
	srv.AuthenticatedName("mx.example.org", true)
	if tlsa, err := r.LookupTLSA(ctx, "mx.example.org"); err != nil || len(tlsa.Records) != 0 || !tlsa.Authenticated {
		t.Errorf("NODATA: %+v, %v; want no records, no error, authenticated", tlsa, err)
	}
	var de *net.DNSError
	if _, err := r.LookupTLSA(ctx, "_25._tcp.missing.example.org"); !errors.As(err, &de) || !de.IsNotFound || de.IsTemporary {
		t.Errorf("NXDOMAIN: %v, want not found", err)
	}
	if _, err := r.LookupTLSA(ctx, "_25._tcp.broken.example.org"); !errors.As(err, &de) || !de.IsTemporary || de.IsNotFound {
		t.Errorf("SERVFAIL: %v, want temporary", err)
	}
	srv.AuthenticatedName("_25._tcp.mx.example.org", true)
	if tlsa, err := r.LookupTLSA(ctx, "_25._tcp.mx.example.org"); err != nil || !tlsa.Authenticated {
		t.Errorf("AD bit: %+v, %v", tlsa, err)
	}
}
