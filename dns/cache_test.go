package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	mdns "github.com/miekg/dns"

	"filtermail/internal/clocktest"
	"filtermail/internal/dnstest"
)

// cacheSetup returns a DNS server and a cache of size answers in front of
// it, whose time moves with the clock returned.
func cacheSetup(t testing.TB, size int) (*dnstest.Server, *Cache, *clocktest.Clock) {
	t.Helper()
	srv := dnstest.Start(t)
	r, err := NewResolver(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	c := NewCache(r, size)
	clk := clocktest.New(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC))
	c.now = clk.Now
	return srv, c, clk
}

// queries fails the test unless the server received want queries for name.
func queries(t *testing.T, srv *dnstest.Server, name string, want int) {
	t.Helper()
	if n := srv.Queries(name); n != want {
		t.Errorf("%d queries for %s, want %d", n, name, want)
	}
}

func cacheTXT(t *testing.T, c *Cache, name string) TXT {
	t.Helper()
	txt, err := c.LookupTXT(context.Background(), name)
	if err != nil {
		t.Fatalf("LookupTXT(%q): %v", name, err)
	}
	return txt
}

// notFound fails the test unless err is a *net.DNSError naming name with
// IsNotFound set.
func notFound(t *testing.T, err error, name string) {
	t.Helper()
	var de *net.DNSError
	if !errors.As(err, &de) || !de.IsNotFound || de.IsTemporary {
		t.Fatalf("error %v, want one with IsNotFound set", err)
	}
	if de.Name != name {
		t.Errorf("error names %q, want %q", de.Name, name)
	}
}

func TestCacheHit(t *testing.T) {
	srv, c, _ := cacheSetup(t, 0)
	srv.TXT("example.org", "one", "two")
	for _, name := range []string{"example.org", "example.org", "Example.ORG."} {
		txt := cacheTXT(t, c, name)
		if !slices.Equal(txt.Records, []string{"one", "two"}) {
			t.Errorf("%s: records %q", name, txt.Records)
		}
		if txt.TTL != dnstest.DefaultTTL {
			t.Errorf("%s: TTL %v, want %v", name, txt.TTL, dnstest.DefaultTTL)
		}
	}
	queries(t, srv, "example.org", 1)
	if c.size != DefaultCacheSize {
		t.Errorf("size %d, want %d", c.size, DefaultCacheSize)
	}
}

// TestCacheExpires waits, on the clock on the wall, for a TTL to run out.
func TestCacheExpires(t *testing.T) {
	srv, c, _ := cacheSetup(t, 0)
	c.now = time.Now
	srv.TTL(1 * time.Second)
	srv.TXT("example.org", "one")
	cacheTXT(t, c, "example.org")
	cacheTXT(t, c, "example.org")
	queries(t, srv, "example.org", 1)
	time.Sleep(1100 * time.Millisecond)
	cacheTXT(t, c, "example.org")
	queries(t, srv, "example.org", 2)
}

func TestCacheTTL(t *testing.T) {
	srv, c, clk := cacheSetup(t, 0)
	srv.TXT("example.org", "one")
	cacheTXT(t, c, "example.org")
	clk.Advance(100*time.Second + 300*time.Millisecond)
	if txt := cacheTXT(t, c, "example.org"); txt.TTL != 199*time.Second {
		t.Errorf("TTL %v after 100.3s, want 199s", txt.TTL)
	}
	clk.Advance(199 * time.Second)
	if txt := cacheTXT(t, c, "example.org"); txt.TTL != 0 {
		t.Errorf("TTL %v after 299.3s, want 0", txt.TTL)
	}
	queries(t, srv, "example.org", 1)
	clk.Advance(time.Second)
	if txt := cacheTXT(t, c, "example.org"); txt.TTL != dnstest.DefaultTTL {
		t.Errorf("TTL %v once expired, want %v", txt.TTL, dnstest.DefaultTTL)
	}
	queries(t, srv, "example.org", 2)
}

func TestCacheTTLCapped(t *testing.T) {
	srv, c, clk := cacheSetup(t, 0)
	srv.TTL(7 * 24 * time.Hour)
	srv.TXT("example.org", "one")
	if txt := cacheTXT(t, c, "example.org"); txt.TTL != maxTTL {
		t.Errorf("TTL %v, want %v", txt.TTL, maxTTL)
	}
	clk.Advance(maxTTL - time.Second)
	cacheTXT(t, c, "example.org")
	queries(t, srv, "example.org", 1)
	clk.Advance(time.Second)
	cacheTXT(t, c, "example.org")
	queries(t, srv, "example.org", 2)
}

func TestCacheTTLZero(t *testing.T) {
	srv, c, _ := cacheSetup(t, 0)
	srv.TTL(0)
	srv.TXT("example.org", "one")
	cacheTXT(t, c, "example.org")
	cacheTXT(t, c, "example.org")
	queries(t, srv, "example.org", 2)
}

func TestCacheAuthenticated(t *testing.T) {
	srv, c, _ := cacheSetup(t, 0)
	srv.TXT("signed.example", "one")
	srv.TXT("unsigned.example", "one")
	srv.AuthenticatedName("signed.example", true)
	for range 2 {
		if !cacheTXT(t, c, "signed.example").Authenticated {
			t.Error("signed.example: AD bit lost")
		}
		if cacheTXT(t, c, "unsigned.example").Authenticated {
			t.Error("unsigned.example: AD bit set")
		}
	}
	queries(t, srv, "signed.example", 1)
	queries(t, srv, "unsigned.example", 1)
}

func TestCacheServerFailure(t *testing.T) {
	for _, rcode := range []int{mdns.RcodeServerFailure, mdns.RcodeRefused} {
		t.Run(mdns.RcodeToString[rcode], func(t *testing.T) {
			srv, c, _ := cacheSetup(t, 0)
			srv.TXT("example.org", "one")
			srv.Rcode("example.org", rcode)
			_, err := c.LookupTXT(context.Background(), "example.org")
			var de *net.DNSError
			if !errors.As(err, &de) || !de.IsTemporary {
				t.Fatalf("error %v, want a temporary one", err)
			}
			srv.Rcode("example.org", mdns.RcodeSuccess)
			cacheTXT(t, c, "example.org")
			queries(t, srv, "example.org", 2)
			cacheTXT(t, c, "example.org")
			queries(t, srv, "example.org", 2)
		})
	}
}

func TestCacheNXDOMAIN(t *testing.T) {
	srv, c, clk := cacheSetup(t, 0)
	_, err := c.LookupMX(context.Background(), "nx.example")
	notFound(t, err, "nx.example")
	// The name now exists, but the cache still says it does not.
	srv.MX("nx.example", 10, "mx.example")
	clk.Advance(negativeTTL - time.Second)
	_, err = c.LookupMX(context.Background(), "NX.example.")
	notFound(t, err, "NX.example.")
	queries(t, srv, "nx.example", 1)

	clk.Advance(time.Second)
	mx, err := c.LookupMX(context.Background(), "nx.example")
	if err != nil || !slices.Equal(mx.Hosts, []string{"mx.example"}) {
		t.Errorf("after %v: %+v, %v; want mx.example", negativeTTL, mx, err)
	}
	queries(t, srv, "nx.example", 2)
}

func TestCacheNODATA(t *testing.T) {
	srv, c, clk := cacheSetup(t, 0)
	srv.A("example.org", "192.0.2.1")
	ctx := context.Background()
	for range 2 {
		mx, err := c.LookupMX(ctx, "example.org")
		if err != nil || len(mx.Hosts) != 0 || mx.Null {
			t.Fatalf("LookupMX: %+v, %v; want no hosts", mx, err)
		}
		if mx.TTL != negativeTTL {
			t.Errorf("MX TTL %v, want %v", mx.TTL, negativeTTL)
		}
		_, err = c.LookupTXT(ctx, "example.org")
		notFound(t, err, "example.org")
		tlsa, err := c.LookupTLSA(ctx, "example.org")
		if err != nil || len(tlsa.Records) != 0 {
			t.Fatalf("LookupTLSA: %+v, %v; want no records", tlsa, err)
		}
	}
	queries(t, srv, "example.org", 3)
	clk.Advance(negativeTTL)
	if _, err := c.LookupMX(ctx, "example.org"); err != nil {
		t.Fatal(err)
	}
	queries(t, srv, "example.org", 4)
}

func TestCacheEviction(t *testing.T) {
	srv, c, _ := cacheSetup(t, 2)
	for _, name := range []string{"a.example", "b.example", "c.example"} {
		srv.TXT(name, name)
	}
	for _, name := range []string{"a.example", "b.example", "a.example", "c.example", "a.example", "b.example"} {
		if txt := cacheTXT(t, c, name); !slices.Equal(txt.Records, []string{name}) {
			t.Fatalf("%s: records %q", name, txt.Records)
		}
	}
	// b was the least recently used when c came, and went.
	queries(t, srv, "a.example", 1)
	queries(t, srv, "b.example", 2)
	queries(t, srv, "c.example", 1)
	c.mu.Lock()
	n := c.lru.Len()
	c.mu.Unlock()
	if n != 2 {
		t.Errorf("%d answers kept, want 2", n)
	}
}

func TestCacheTooLarge(t *testing.T) {
	srv, c, _ := cacheSetup(t, 0)
	many := make([]string, maxAnswerRecords+1)
	for i := range many {
		many[i] = fmt.Sprint(i)
	}
	srv.TXT("many.example", many...)
	srv.TXT("long.example", strings.Repeat("k", maxAnswerBytes))
	srv.TXT("fits.example", many[:maxAnswerRecords]...)
	for name, keep := range map[string]bool{"many.example": false, "long.example": false, "fits.example": true} {
		// Large answers take a UDP and a TCP query.
		cacheTXT(t, c, name)
		n := srv.Queries(name)
		cacheTXT(t, c, name)
		if keep {
			queries(t, srv, name, n)
		} else {
			queries(t, srv, name, 2*n)
		}
	}
}

func TestCacheMX(t *testing.T) {
	srv, c, _ := cacheSetup(t, 0)
	srv.MX("example.org", 20, "mx2.example.org")
	srv.MX("example.org", 10, "mx1.example.org")
	srv.AuthenticatedName("example.org", true)
	srv.MX("null.example", 0, ".")
	for range 2 {
		mx, err := c.LookupMX(context.Background(), "example.org")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(mx.Hosts, []string{"mx1.example.org", "mx2.example.org"}) || !mx.Authenticated {
			t.Errorf("%+v, want mx1 then mx2, authenticated", mx)
		}
		if mx, err := c.LookupMX(context.Background(), "null.example"); err != nil || !mx.Null {
			t.Errorf("null.example: %+v, %v; want a null MX", mx, err)
		}
	}
	queries(t, srv, "example.org", 1)
	queries(t, srv, "null.example", 1)
}

func TestCacheAddrs(t *testing.T) {
	srv, c, clk := cacheSetup(t, 0)
	srv.A("mx.example", "192.0.2.1")
	srv.AAAA("mx.example", "2001:db8::1")
	srv.A("v4.example", "192.0.2.2")
	want := []netip.Addr{netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("192.0.2.1")}
	for range 2 {
		addrs, err := c.LookupAddrs(context.Background(), "mx.example")
		if err != nil || !slices.Equal(addrs.IPs, want) {
			t.Errorf("%+v, %v; want %v", addrs, err, want)
		}
		addrs, err = c.LookupAddrs(context.Background(), "v4.example")
		if err != nil || len(addrs.IPs) != 1 || addrs.TTL != dnstest.DefaultTTL {
			t.Errorf("v4.example: %+v, %v", addrs, err)
		}
	}
	queries(t, srv, "mx.example", 2) // A and AAAA, once
	queries(t, srv, "v4.example", 2) // A, and AAAA not found
	// The missing AAAA is asked again sooner than the A record.
	clk.Advance(negativeTTL)
	if addrs, err := c.LookupAddrs(context.Background(), "v4.example"); err != nil || addrs.TTL != dnstest.DefaultTTL-negativeTTL {
		t.Errorf("v4.example after %v: %+v, %v", negativeTTL, addrs, err)
	}
	queries(t, srv, "v4.example", 3)
}

// TestCacheAddrsPartial: a temporary failure of the AAAA lookup is not kept
// with the A answer that came with it.
func TestCacheAddrsPartial(t *testing.T) {
	srv, c, _ := cacheSetup(t, 0)
	srv.A("mx.example", "192.0.2.1")
	srv.AAAA("mx.example", "2001:db8::1")
	fail := true
	c.query = func(ctx context.Context, name string, qtype uint16) (answer, error) {
		if qtype == mdns.TypeAAAA && fail {
			return answer{}, &net.DNSError{Err: "server answered SERVFAIL", Name: name, IsTemporary: true}
		}
		return c.r.exchange(ctx, name, qtype)
	}
	addrs, err := c.LookupAddrs(context.Background(), "mx.example")
	if err != nil || len(addrs.IPs) != 1 {
		t.Fatalf("%+v, %v; want the IPv4 address", addrs, err)
	}
	fail = false
	addrs, err = c.LookupAddrs(context.Background(), "mx.example")
	if err != nil || len(addrs.IPs) != 2 {
		t.Errorf("%+v, %v; want both addresses", addrs, err)
	}
	queries(t, srv, "mx.example", 2) // A once, AAAA once (its failure was made here)
}

func TestCacheTLSA(t *testing.T) {
	srv, c, _ := cacheSetup(t, 0)
	name := "_25._tcp.mx.example"
	data := []byte{1, 2, 3, 4}
	srv.TLSA(name, 3, 1, 1, data)
	srv.AuthenticatedName(name, true)
	for range 2 {
		tlsa, err := c.LookupTLSA(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		want := []TLSARecord{{Usage: 3, Selector: 1, MatchingType: 1, Data: data}}
		if !slices.EqualFunc(tlsa.Records, want, func(a, b TLSARecord) bool {
			return a.Usage == b.Usage && a.Selector == b.Selector && a.MatchingType == b.MatchingType && string(a.Data) == string(b.Data)
		}) || !tlsa.Authenticated {
			t.Errorf("%+v, want %+v, authenticated", tlsa, want)
		}
		// Answers are made anew from the records kept: changing one
		// changes no other.
		tlsa.Records[0].Data[0] = 0xff
	}
	queries(t, srv, name, 1)
}

func TestCacheConcurrent(t *testing.T) {
	srv, c, _ := cacheSetup(t, 0)
	srv.MX("example.org", 10, "mx.example.org")
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			mx, err := c.LookupMX(context.Background(), "example.org")
			if err != nil || !slices.Equal(mx.Hosts, []string{"mx.example.org"}) {
				t.Errorf("%+v, %v", mx, err)
			}
		})
	}
	wg.Wait()
	queries(t, srv, "example.org", 1)
}

// TestCacheShared holds a query under way while lookups of the same key
// come: they share it, and a caller that leaves ends no one else's wait.
func TestCacheShared(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, err := NewResolver("127.0.0.1:53")
		if err != nil {
			t.Fatal(err)
		}
		c := NewCache(r, 0)
		release := make(chan struct{})
		var mu sync.Mutex
		asked := 0
		c.query = func(ctx context.Context, name string, qtype uint16) (answer, error) {
			mu.Lock()
			asked++
			mu.Unlock()
			select {
			case <-release:
			case <-ctx.Done():
				return answer{}, c.r.netError(name, ctx.Err())
			}
			rr, err := mdns.NewRR(name + " 300 IN TXT \"one\"")
			if err != nil {
				return answer{}, err
			}
			return answer{records: []mdns.RR{rr}, ttl: 300 * time.Second}, nil
		}

		ctx, cancel := context.WithCancel(context.Background())
		left := make(chan error, 1)
		go func() {
			_, err := c.LookupTXT(ctx, "example.org")
			left <- err
		}()
		synctest.Wait() // the caller that leaves started the query
		results := make(chan error, 10)
		for range cap(results) {
			go func() {
				txt, err := c.LookupTXT(context.Background(), "EXAMPLE.org")
				if err == nil && !slices.Equal(txt.Records, []string{"one"}) {
					err = fmt.Errorf("records %q", txt.Records)
				}
				results <- err
			}()
		}
		synctest.Wait()
		cancel()
		var de *net.DNSError
		if err := <-left; !errors.As(err, &de) || !de.IsTemporary || de.Name != "example.org" {
			t.Errorf("the caller that left: %v, want a temporary error", err)
		}
		synctest.Wait()
		if len(results) != 0 {
			t.Fatal("the others stopped waiting too")
		}
		close(release)
		for range cap(results) {
			if err := <-results; err != nil {
				t.Error(err)
			}
		}
		cacheTXT(t, c, "example.org")
		mu.Lock()
		defer mu.Unlock()
		if asked != 1 {
			t.Errorf("%d queries, want 1", asked)
		}
	})
}

func TestKept(t *testing.T) {
	rr := func(s string) mdns.RR {
		r, err := mdns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	a := []mdns.RR{rr("example.org. 300 IN A 192.0.2.1")}
	for _, tc := range []struct {
		name string
		ans  answer
		err  error
		want time.Duration
	}{
		{"records", answer{records: a, ttl: 300 * time.Second}, nil, 300 * time.Second},
		{"long TTL", answer{records: a, ttl: 48 * time.Hour}, nil, maxTTL},
		{"TTL 0", answer{records: a}, nil, 0},
		{"NODATA", answer{}, nil, negativeTTL},
		{"NODATA after a CNAME", answer{ttl: 5 * time.Second}, nil, 5 * time.Second},
		{"NXDOMAIN", answer{}, &net.DNSError{Err: "no such host", IsNotFound: true}, negativeTTL},
		{"SERVFAIL", answer{}, &net.DNSError{Err: "server answered SERVFAIL", IsTemporary: true}, 0},
		{"timeout", answer{}, &net.DNSError{Err: "i/o timeout", IsTemporary: true, IsTimeout: true}, 0},
		{"FORMERR", answer{}, &net.DNSError{Err: "server answered FORMERR"}, 0},
		{"other error", answer{}, errors.New("no"), 0},
	} {
		if got := kept(tc.ans, tc.err); got != tc.want {
			t.Errorf("%s: kept %v, want %v", tc.name, got, tc.want)
		}
	}
}

// BenchmarkCache compares an answer from the cache (hit) with one the
// server is asked for (miss: a TTL of 0 is not kept).
func BenchmarkCache(b *testing.B) {
	for _, bc := range []struct {
		name string
		ttl  time.Duration
	}{{"hit", time.Hour}, {"miss", 0}} {
		b.Run(bc.name, func(b *testing.B) {
			srv, c, _ := cacheSetup(b, 0)
			c.now = time.Now
			srv.TTL(bc.ttl)
			srv.MX("example.org", 10, "mx.example.org")
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.LookupMX(ctx, "example.org"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("hit-parallel", func(b *testing.B) {
		srv, c, _ := cacheSetup(b, 0)
		c.now = time.Now
		srv.MX("example.org", 10, "mx.example.org")
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := c.LookupMX(context.Background(), "example.org"); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
