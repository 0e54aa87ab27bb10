package dns_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"filtermail/dns"
	"filtermail/internal/dnstest"
)

func setup(t *testing.T) (*dnstest.Server, *dns.Resolver) {
	t.Helper()
	srv := dnstest.Start(t)
	r, err := dns.NewResolver(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	return srv, r
}

func lookup(t *testing.T, r *dns.Resolver, name string) dns.TXT {
	t.Helper()
	txt, err := r.LookupTXT(context.Background(), name)
	if err != nil {
		t.Fatalf("LookupTXT(%q): %v", name, err)
	}
	return txt
}

// lookupErr looks name up, expecting a *net.DNSError naming it.
func lookupErr(t *testing.T, ctx context.Context, r *dns.Resolver, name string) *net.DNSError {
	t.Helper()
	txt, err := r.LookupTXT(ctx, name)
	if err == nil {
		t.Fatalf("LookupTXT(%q) = %+v, want an error", name, txt)
	}
	var de *net.DNSError
	if !errors.As(err, &de) {
		t.Fatalf("LookupTXT(%q): %T %v, want a *net.DNSError", name, err, err)
	}
	if de.Name != name {
		t.Errorf("error names %q, want %q", de.Name, name)
	}
	return de
}

func TestLookupTXTRecords(t *testing.T) {
	srv, r := setup(t)
	srv.TXT("example.org", "v=spf1 -all", "second record")
	txt := lookup(t, r, "example.org")
	if want := []string{"v=spf1 -all", "second record"}; !slices.Equal(txt.Records, want) {
		t.Errorf("records %q, want %q", txt.Records, want)
	}
	if txt.TTL != dnstest.DefaultTTL {
		t.Errorf("TTL %v, want %v", txt.TTL, dnstest.DefaultTTL)
	}
	// Names are not case-sensitive, and may end in a dot.
	if txt := lookup(t, r, "Example.ORG."); len(txt.Records) != 2 {
		t.Errorf("records of Example.ORG.: %q", txt.Records)
	}
}

func TestLookupTXTMultiString(t *testing.T) {
	srv, r := setup(t)
	// A 2048-bit RSA key record is longer than one character-string.
	long := "v=DKIM1; k=rsa; p=" + strings.Repeat("MIIBIjANBgkqhkiG9w0BAQEFAAOC", 20)
	srv.TXT("sel._domainkey.example.org", long)
	txt := lookup(t, r, "sel._domainkey.example.org")
	if len(txt.Records) != 1 || txt.Records[0] != long {
		t.Errorf("records %q, want the one record joined", txt.Records)
	}
}

func TestLookupTXTQuery(t *testing.T) {
	srv, r := setup(t)
	srv.TXT("example.org", "x")
	lookup(t, r, "example.org")
	q := srv.Last("example.org")
	if q == nil {
		t.Fatal("no query")
	}
	if !q.RecursionDesired {
		t.Error("RD not set")
	}
	opt := q.IsEdns0()
	if opt == nil || !opt.Do() {
		t.Fatalf("EDNS0 OPT %v: want one with the DO bit", opt)
	}
	if opt.UDPSize() < 1232 {
		t.Errorf("UDP payload size %d", opt.UDPSize())
	}
	if q.Question[0].Qtype != mdns.TypeTXT || q.Question[0].Name != "example.org." {
		t.Errorf("question %v", q.Question[0])
	}
}

func TestLookupTXTBytes(t *testing.T) {
	srv, r := setup(t)
	// Bytes that miekg/dns escapes when it unpacks a string come back raw.
	raw := "quote\" backslash\\ semicolon; nul\x00 tab\t latin1\xe9 high\xff \\065"
	srv.TXT("bytes.example.org", raw)
	txt := lookup(t, r, "bytes.example.org")
	if len(txt.Records) != 1 || txt.Records[0] != raw {
		t.Errorf("records %q, want %q", txt.Records, raw)
	}
}

func TestLookupTXTTTL(t *testing.T) {
	srv, r := setup(t)
	srv.TXT("example.org", "x")
	srv.TTL(42 * time.Second)
	if txt := lookup(t, r, "example.org"); txt.TTL != 42*time.Second {
		t.Errorf("TTL %v, want 42s", txt.TTL)
	}
	srv.TTL(0)
	if txt := lookup(t, r, "example.org"); txt.TTL != 0 {
		t.Errorf("TTL %v, want 0", txt.TTL)
	}
}

func TestLookupTXTAuthenticated(t *testing.T) {
	srv, r := setup(t)
	srv.TXT("example.org", "x")
	if txt := lookup(t, r, "example.org"); txt.Authenticated {
		t.Error("Authenticated without the AD bit")
	}
	srv.Authenticated(true)
	if txt := lookup(t, r, "example.org"); !txt.Authenticated {
		t.Error("not Authenticated with the AD bit")
	}
	srv.Authenticated(false)
	if txt := lookup(t, r, "example.org"); txt.Authenticated {
		t.Error("Authenticated after the AD bit was cleared")
	}
}

func TestLookupTXTCNAME(t *testing.T) {
	srv, r := setup(t)
	srv.CNAME("sel._domainkey.example.org", "sel._domainkey.provider.example")
	srv.TXT("sel._domainkey.provider.example", "v=DKIM1; p=abc")
	txt := lookup(t, r, "sel._domainkey.example.org")
	if len(txt.Records) != 1 || txt.Records[0] != "v=DKIM1; p=abc" {
		t.Errorf("records %q through the CNAME", txt.Records)
	}
}

func TestLookupTXTNXDOMAIN(t *testing.T) {
	_, r := setup(t)
	de := lookupErr(t, context.Background(), r, "missing.example.org")
	if !de.IsNotFound || de.IsTemporary || de.IsTimeout {
		t.Errorf("%+v: want not found, not temporary", de)
	}
}

func TestLookupTXTNODATA(t *testing.T) {
	srv, r := setup(t)
	srv.A("example.org", "192.0.2.1")
	de := lookupErr(t, context.Background(), r, "example.org")
	if !de.IsNotFound || de.IsTemporary {
		t.Errorf("%+v: want not found, not temporary", de)
	}
}

func TestLookupTXTServerFailures(t *testing.T) {
	srv, r := setup(t)
	for _, rcode := range []int{mdns.RcodeServerFailure, mdns.RcodeRefused} {
		t.Run(mdns.RcodeToString[rcode], func(t *testing.T) {
			srv.TXT("example.org", "x")
			srv.Rcode("example.org", rcode)
			de := lookupErr(t, context.Background(), r, "example.org")
			if !de.IsTemporary || de.IsNotFound || de.IsTimeout {
				t.Errorf("%+v: want temporary", de)
			}
			var ne net.Error
			if !errors.As(error(de), &ne) || !ne.Temporary() {
				t.Errorf("%+v is not a temporary net.Error", de)
			}
		})
	}
}

func TestLookupTXTOtherRcode(t *testing.T) {
	srv, r := setup(t)
	srv.TXT("example.org", "x")
	srv.Rcode("example.org", mdns.RcodeNotImplemented)
	de := lookupErr(t, context.Background(), r, "example.org")
	if de.IsTemporary || de.IsNotFound || de.IsTimeout {
		t.Errorf("%+v: want neither temporary nor not found", de)
	}
}

func TestLookupTXTTimeout(t *testing.T) {
	srv, r := setup(t)
	srv.Stall("example.org")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	de := lookupErr(t, ctx, r, "example.org")
	if !de.IsTimeout || !de.IsTemporary || de.IsNotFound {
		t.Errorf("%+v: want a temporary timeout", de)
	}
	if srv.Queries("example.org") != 1 {
		t.Errorf("%d queries, want 1", srv.Queries("example.org"))
	}
}

func TestLookupTXTCanceled(t *testing.T) {
	srv, r := setup(t)
	srv.Stall("example.org")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan *net.DNSError)
	go func() {
		_, err := r.LookupTXT(ctx, "example.org")
		de, _ := err.(*net.DNSError)
		done <- de
	}()
	// Cancel once the query has reached the server.
	for srv.Queries("example.org") == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	de := <-done
	if de == nil || !de.IsTemporary || de.IsTimeout {
		t.Errorf("%+v: want temporary, not a timeout", de)
	}
}

func TestLookupTXTTruncated(t *testing.T) {
	srv, r := setup(t)
	srv.TXT("example.org", "v=DKIM1; p=abc")
	srv.Truncate("example.org")
	txt := lookup(t, r, "example.org")
	if len(txt.Records) != 1 || txt.Records[0] != "v=DKIM1; p=abc" {
		t.Errorf("records %q", txt.Records)
	}
	if n := srv.Queries("example.org"); n != 2 {
		t.Errorf("%d queries, want 2 (UDP, then TCP)", n)
	}
}

func TestLookupTXTLargeAnswer(t *testing.T) {
	srv, r := setup(t)
	// More than fits in the UDP payload size the resolver announces.
	var records []string
	for i := range 12 {
		records = append(records, strings.Repeat(string(rune('a'+i)), 300))
	}
	srv.TXT("big.example.org", records...)
	txt := lookup(t, r, "big.example.org")
	if !slices.Equal(txt.Records, records) {
		t.Errorf("got %d records, want %d", len(txt.Records), len(records))
	}
	if n := srv.Queries("big.example.org"); n != 2 {
		t.Errorf("%d queries, want 2 (UDP, then TCP)", n)
	}
}

func TestLookupTXTInvalidName(t *testing.T) {
	srv, r := setup(t)
	for _, name := range []string{"", "a b.example.org", "back\\slash.example.org", strings.Repeat("a", 64) + ".example.org", "a..b"} {
		de := lookupErr(t, context.Background(), r, name)
		if de.IsTemporary || de.IsNotFound {
			t.Errorf("%q: %+v, want a permanent error", name, de)
		}
	}
	if n := srv.Queries("a b.example.org"); n != 0 {
		t.Errorf("an invalid name was asked %d times", n)
	}
}

func TestLookupTXTConcurrent(t *testing.T) {
	srv, r := setup(t)
	srv.TXT("example.org", "x")
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if txt, err := r.LookupTXT(context.Background(), "example.org"); err != nil || len(txt.Records) != 1 {
				t.Errorf("LookupTXT: %v %v", txt, err)
			}
		})
	}
	wg.Wait()
}

func TestNewResolver(t *testing.T) {
	for _, server := range []string{"127.0.0.1:53", "[::1]:5353", "192.0.2.1:65535"} {
		r, err := dns.NewResolver(server)
		if err != nil {
			t.Errorf("NewResolver(%q): %v", server, err)
		} else if r.Server() != server {
			t.Errorf("NewResolver(%q) asks %q", server, r.Server())
		}
	}
	for server, want := range map[string]string{
		"127.0.0.1":       "want host:port",
		"localhost:53":    "not an IP address",
		"127.0.0.1:0":     "port",
		"127.0.0.1:65536": "port",
		"127.0.0.1:dns":   "port",
		"::1:53":          "want host:port",
	} {
		_, err := dns.NewResolver(server)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), server) {
			t.Errorf("NewResolver(%q): %v, want an error naming it and saying %q", server, err, want)
		}
	}
}
