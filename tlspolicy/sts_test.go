package tlspolicy_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"filtermail/tlspolicy"
)

// A domain without an MTA-STS record has no policy, and no error: no name,
// a name without TXT records, TXT records of other kinds.
func TestSTSNoRecord(t *testing.T) {
	e := newEnv(t)
	e.dns.TXT("_mta-sts.other.example", "v=spf1 -all", "v=STSv1")
	e.dns.MX("nodata.example", 10, "mx.nodata.example")
	e.dns.TXT("_mta-sts.nodata.example")
	for _, domain := range []string{"missing.example", "nodata.example", "other.example"} {
		if sts := e.sts(t, domain); sts.Mode != tlspolicy.None || len(sts.MX) != 0 {
			t.Errorf("%s: %+v, want mode none", domain, sts)
		}
	}
	if n := e.fetched("other.example"); n != 0 {
		t.Errorf("%d fetches for a domain without a record", n)
	}
}

// An enforced policy is fetched once, kept, and says which hosts it allows.
func TestSTSEnforce(t *testing.T) {
	e := newEnv(t)
	e.publish("relay.example", "20261101", enforce)
	for range 3 {
		sts := e.sts(t, "Relay.Example.")
		if sts.Mode != tlspolicy.Enforce || sts.ID != "20261101" || sts.MaxAge != 7*24*time.Hour ||
			!slices.Equal(sts.MX, []string{"mx1.relay.example", "*.mx.relay.example"}) {
			t.Fatalf("policy: %+v", sts)
		}
		if !sts.Matches("mx1.relay.example") || !sts.Matches("a.mx.relay.example.") || sts.Matches("mx2.relay.example") {
			t.Errorf("matches: %+v", sts)
		}
	}
	if n := e.fetched("relay.example"); n != 1 {
		t.Errorf("%d fetches, want 1", n)
	}
	if got := e.log.String(); !strings.Contains(got, "relay.example: policy id 20261101 fetched: mode enforce") {
		t.Errorf("log: %q", got)
	}
}

func TestSTSModes(t *testing.T) {
	e := newEnv(t)
	e.publish("testing.example", "1", "version: STSv1\nmode: testing\nmx: mx.testing.example\nmax_age: 86400\n")
	e.publish("none.example", "1", "version: STSv1\nmode: none\nmax_age: 86400\n")
	if sts := e.sts(t, "testing.example"); sts.Mode != tlspolicy.Testing || !sts.Matches("mx.testing.example") || sts.MaxAge != 24*time.Hour {
		t.Errorf("testing: %+v", sts)
	}
	if sts := e.sts(t, "none.example"); sts.Mode != tlspolicy.None || sts.ID != "1" {
		t.Errorf("none: %+v", sts)
	}
	if tlspolicy.Testing.String() != "testing" || tlspolicy.Enforce.String() != "enforce" || tlspolicy.None.String() != "none" {
		t.Errorf("mode names")
	}
}

// A new id in the TXT record fetches the policy again at once; the same id
// fetches it again only after a day (or max_age, if shorter).
func TestSTSRefetch(t *testing.T) {
	e := newEnv(t)
	e.publish("relay.example", "1", enforce)
	e.sts(t, "relay.example")
	e.policy("relay.example", strings.Replace(enforce, "mx1.", "mx9.", 1))
	if sts := e.sts(t, "relay.example"); !sts.Matches("mx1.relay.example") || e.fetched("relay.example") != 1 {
		t.Errorf("same id: %+v, %d fetches", sts, e.fetched("relay.example"))
	}
	e.record("relay.example", "2")
	if sts := e.sts(t, "relay.example"); !sts.Matches("mx9.relay.example") || sts.ID != "2" || e.fetched("relay.example") != 2 {
		t.Errorf("new id: %+v, %d fetches", sts, e.fetched("relay.example"))
	}
	e.policy("relay.example", strings.Replace(enforce, "mx1.", "mx8.", 1))
	e.clock.Advance(tlspolicy.RefreshAfter - time.Second)
	e.sts(t, "relay.example")
	e.clock.Advance(time.Second)
	if sts := e.sts(t, "relay.example"); !sts.Matches("mx8.relay.example") || e.fetched("relay.example") != 3 {
		t.Errorf("after a day: %+v, %d fetches", sts, e.fetched("relay.example"))
	}

	// max_age shorter than a day: fetched again when it ends.
	e.publish("short.example", "1", "version: STSv1\nmode: enforce\nmx: mx.short.example\nmax_age: 60\n")
	e.sts(t, "short.example")
	e.clock.Advance(59 * time.Second)
	e.sts(t, "short.example")
	e.clock.Advance(time.Second)
	e.sts(t, "short.example")
	if n := e.fetched("short.example"); n != 2 {
		t.Errorf("max_age 60: %d fetches, want 2", n)
	}
}

// A policy kept is used while the record or the policy cannot be had,
// until its max_age ends; without one kept, the failure is an error.
func TestSTSKeptOnFailure(t *testing.T) {
	e := newEnv(t)
	e.publish("relay.example", "1", enforce)
	e.publish("new.example", "1", enforce)
	e.sts(t, "relay.example")

	// The DNS server fails.
	e.dns.Rcode("_mta-sts.relay.example", mdns.RcodeServerFailure)
	e.dns.Rcode("_mta-sts.new.example", mdns.RcodeServerFailure)
	if sts := e.sts(t, "relay.example"); sts.Mode != tlspolicy.Enforce {
		t.Errorf("SERVFAIL, policy kept: %+v", sts)
	}
	if _, err := e.checker.STS(context.Background(), "new.example"); err == nil || !isTemporary(err) || !strings.Contains(err.Error(), "_mta-sts.new.example") {
		t.Errorf("SERVFAIL, no policy kept: %v, want a temporary error", err)
	}
	e.dns.Rcode("_mta-sts.relay.example", mdns.RcodeSuccess)
	e.dns.Rcode("_mta-sts.new.example", mdns.RcodeSuccess)

	// The record has gone: the policy stays (RFC 8461 section 3.1).
	e.dns.Remove("_mta-sts.relay.example")
	if sts := e.sts(t, "relay.example"); sts.Mode != tlspolicy.Enforce {
		t.Errorf("record gone, policy kept: %+v", sts)
	}
	e.record("relay.example", "1")

	// The policy server has gone, and a new id is published.
	e.srv.Close()
	e.client.CloseIdleConnections()
	e.record("relay.example", "2")
	if sts := e.sts(t, "relay.example"); sts.Mode != tlspolicy.Enforce || sts.ID != "1" {
		t.Errorf("server gone, policy kept: %+v", sts)
	}
	_, err := e.checker.STS(context.Background(), "new.example")
	if err == nil || !isTemporary(err) || !strings.Contains(err.Error(), "https://mta-sts.new.example/.well-known/mta-sts.txt") {
		t.Errorf("server gone, no policy kept: %v, want a temporary error", err)
	}
	if !strings.Contains(e.log.String(), "new.example: policy id 1 not fetched") {
		t.Errorf("log: %q", e.log.String())
	}

	// Past max_age, the policy is no more.
	e.clock.Advance(7 * 24 * time.Hour)
	if _, err := e.checker.STS(context.Background(), "relay.example"); err == nil || !isTemporary(err) {
		t.Errorf("policy expired, server gone: %v, want a temporary error", err)
	}
	e.dns.Remove("_mta-sts.relay.example")
	if sts := e.sts(t, "relay.example"); sts.Mode != tlspolicy.None {
		t.Errorf("policy expired, record gone: %+v", sts)
	}
}

// A fetch that failed is not made again for the same id within
// RetryAfter; a new id is fetched at once.
func TestSTSRetryAfter(t *testing.T) {
	e := newEnv(t)
	e.record("relay.example", "1")
	e.handle("relay.example", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "busy", http.StatusServiceUnavailable)
	})
	for range 3 {
		if _, err := e.checker.STS(context.Background(), "relay.example"); err == nil || !isTemporary(err) || !strings.Contains(err.Error(), "503") {
			t.Errorf("503: %v, want a temporary error", err)
		}
	}
	if n := e.fetched("relay.example"); n != 1 {
		t.Errorf("%d fetches within RetryAfter, want 1", n)
	}
	e.policy("relay.example", enforce)
	e.clock.Advance(tlspolicy.RetryAfter)
	if sts := e.sts(t, "relay.example"); sts.Mode != tlspolicy.Enforce || e.fetched("relay.example") != 2 {
		t.Errorf("after RetryAfter: %+v, %d fetches", sts, e.fetched("relay.example"))
	}

	// A kept policy whose refresh fails stays in use without a fetch per call.
	e.handle("relay.example", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "busy", http.StatusServiceUnavailable)
	})
	e.record("relay.example", "2")
	for range 3 {
		if sts := e.sts(t, "relay.example"); sts.ID != "1" {
			t.Errorf("refresh failed: %+v, want the policy kept", sts)
		}
	}
	if n := e.fetched("relay.example"); n != 3 {
		t.Errorf("%d fetches, want 3", n)
	}
	e.record("relay.example", "3")
	e.sts(t, "relay.example")
	if n := e.fetched("relay.example"); n != 4 {
		t.Errorf("%d fetches after a new id, want 4", n)
	}
}

// What is not a policy served as RFC 8461 section 3.3 says is no policy:
// a redirect (not followed), a status other than 200, another media type,
// more than 64 KiB, bad syntax, a certificate not trusted, a bad record.
func TestSTSRefused(t *testing.T) {
	e := newEnv(t)
	e.publish("target.example", "1", enforce)
	pad := func(n int) string {
		s := enforce + "x: "
		return s + strings.Repeat("a", n-len(s)-2) + "\r\n"
	}
	tests := []struct {
		name      string
		handler   http.HandlerFunc
		record    string
		temporary bool
		want      string
	}{
		{name: "redirect", handler: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "https://mta-sts.target.example/.well-known/mta-sts.txt", http.StatusMovedPermanently)
		}, want: "redirects are not followed"},
		{name: "not found", handler: http.NotFound, want: "404"},
		{name: "server error", handler: func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "oops", http.StatusInternalServerError)
		}, temporary: true, want: "500"},
		{name: "html", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, enforce)
		}, want: `content type "text/html"`},
		{name: "no content type", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header()["Content-Type"] = nil
			fmt.Fprint(w, enforce)
		}, want: "content type"},
		{name: "too large", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprint(w, pad(tlspolicy.MaxPolicySize+1))
		}, want: "larger than 65536 bytes"},
		{name: "syntax", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprint(w, "version: STSv1\nmode: enforce\nmax_age: 1\n")
		}, want: "missing mx"},
		{name: "two records", record: "v=STSv1; id=2", handler: http.NotFound, want: "2 records, want one"},
		{name: "bad record", record: "v=STSv1; id=a-b", handler: http.NotFound, want: "record syntax"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			domain := fmt.Sprintf("d%d.example", i)
			e.record(domain, "1")
			if tt.record != "" {
				e.dns.TXT("_mta-sts."+domain, "v=STSv1; id=1", tt.record)
				if tt.name == "bad record" {
					e.dns.TXT("_mta-sts."+domain, tt.record)
				}
			}
			e.handle(domain, tt.handler)
			sts, err := e.checker.STS(context.Background(), domain)
			if err == nil || isTemporary(err) != tt.temporary || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("%+v, %v; want an error with %q, temporary %v", sts, err, tt.want, tt.temporary)
			}
		})
	}
	if n := e.fetched("target.example"); n != 0 {
		t.Errorf("the redirect was followed")
	}

	// 64 KiB exactly is a policy.
	e.publish("large.example", "1", pad(tlspolicy.MaxPolicySize))
	if sts := e.sts(t, "large.example"); sts.Mode != tlspolicy.Enforce {
		t.Errorf("64 KiB: %+v", sts)
	}

	// A client that does not trust the server's CA.
	e.publish("relay.example", "1", enforce)
	untrusted := tlspolicy.New(tlspolicy.Options{Resolver: resolverOf(t, e), HTTP: &http.Client{Transport: &http.Transport{DialContext: dialer(resolverOf(t, e))}}})
	_, err := untrusted.STS(context.Background(), "relay.example")
	if err == nil || isTemporary(err) || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted: %v, want an error about the certificate, not temporary", err)
	}
}

// Callers asking at once share one fetch; one giving up does not end it
// for the others.
func TestSTSConcurrent(t *testing.T) {
	e := newEnv(t)
	e.record("relay.example", "1")
	entered, release := make(chan struct{}, 1), make(chan struct{})
	e.handle("relay.example", func(w http.ResponseWriter, r *http.Request) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, enforce)
	})
	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error, 1)
	go func() {
		_, err := e.checker.STS(ctx, "relay.example")
		gaveUp <- err
	}()
	<-entered
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if sts, err := e.checker.STS(context.Background(), "relay.example"); err != nil || sts.Mode != tlspolicy.Enforce {
				t.Errorf("%+v, %v", sts, err)
			}
		}()
	}
	cancel()
	if err := <-gaveUp; !errors.Is(err, context.Canceled) || !isTemporary(err) {
		t.Errorf("cancelled: %v", err)
	}
	close(release)
	wg.Wait()
	if n := e.fetched("relay.example"); n != 1 {
		t.Errorf("%d fetches, want 1", n)
	}
}

// The cache holds a bounded number of domains.
func TestSTSCacheSize(t *testing.T) {
	e := newEnv(t)
	c := tlspolicy.New(tlspolicy.Options{Resolver: resolverOf(t, e), HTTP: e.client, CacheSize: 2})
	for i := range 4 {
		domain := fmt.Sprintf("d%d.example", i)
		e.publish(domain, "1", enforce)
		if sts, err := c.STS(context.Background(), domain); err != nil || sts.Mode != tlspolicy.Enforce {
			t.Fatalf("%s: %+v, %v", domain, sts, err)
		}
	}
	if n := tlspolicy.Cached(c); n != 2 {
		t.Errorf("%d domains kept, want 2", n)
	}
	c.STS(context.Background(), "d0.example")
	if n := e.fetched("d0.example"); n != 2 {
		t.Errorf("d0.example: %d fetches, want 2 (forgotten, fetched again)", n)
	}
	c.STS(context.Background(), "d3.example")
	if n := e.fetched("d3.example"); n != 1 {
		t.Errorf("d3.example: %d fetches, want 1 (kept)", n)
	}
}

func TestSTSBadDomain(t *testing.T) {
	e := newEnv(t)
	for _, domain := range []string{"", ".", "a..b", "192.0.2.1", "exa mple.org"} {
		if sts, err := e.checker.STS(context.Background(), domain); err == nil {
			t.Errorf("%q: %+v, want an error", domain, sts)
		}
	}
}
