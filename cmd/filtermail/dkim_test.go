package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"filtermail/dkim"
	"filtermail/internal/daemontest"
	"filtermail/internal/dkimtest"
	"filtermail/internal/dnstest"
	"filtermail/metrics"
)

// dkimOn turns the incoming filter's DKIM check on: FILTERMAIL_SKIP_DKIM
// empty.
var dkimOn = daemontest.Options{Env: []string{skipDKIMEnv}}

// senders are the domains mail comes from in a DKIM test: each with an
// RSA key, published in a DNS server of the test, that OpenDKIM signs
// with as a relay does.
type senders struct {
	dns  *dnstest.Server
	keys map[string]*dkimtest.Key
}

func newSenders(t *testing.T, domains ...string) *senders {
	t.Helper()
	s := &senders{dns: dnstest.Start(t), keys: map[string]*dkimtest.Key{}}
	for _, domain := range domains {
		k := dkimtest.NewKey(t, dkimtest.RSA, domain, "relay")
		s.dns.TXT(k.Name(), k.TXT())
		s.keys[domain] = k
	}
	return s
}

// param points the daemon's lookups at the test's DNS server.
func (s *senders) param() string { return "filtermail_dns_resolver = " + s.dns.Addr() }

// sign returns msg signed relaxed/relaxed by the key of domain.
func (s *senders) sign(t *testing.T, domain string, msg []byte) []byte {
	t.Helper()
	return dkimtest.SignOpenDKIM(t, s.keys[domain], msg, "relaxed/relaxed")
}

// unreachable makes the key of domain answer SERVFAIL.
func (s *senders) unreachable(domain string) {
	s.dns.Rcode(s.keys[domain].Name(), dns.RcodeServerFailure)
}

// tamper changes the signed Subject header of msg.
func tamper(msg []byte) []byte {
	return []byte(strings.Replace(string(msg), "\r\nSubject: ", "\r\nSubject: changed ", 1))
}

// Every outcome of the DKIM check and every key lookup result has its
// series, exported from the start.
func TestDKIMLabels(t *testing.T) {
	for _, o := range dkim.Outcomes() {
		if !slices.Contains(metrics.DKIMResults(), string(o)) {
			t.Errorf("DKIM outcome %q has no series", o)
		}
	}
	seen := map[string]bool{}
	for _, r := range dkim.LookupResults() {
		for _, l := range []dkim.Lookup{{Result: r}, {Result: r, Authenticated: true}, {Result: r, Cached: true}} {
			seen[keyLookupResult(l)] = true
		}
	}
	for label := range seen {
		if !slices.Contains(metrics.KeyLookupResults(), label) {
			t.Errorf("key lookup label %q has no series", label)
		}
	}
	if len(seen) != len(metrics.KeyLookupResults()) {
		t.Errorf("labels used %v, series %v", seen, metrics.KeyLookupResults())
	}
}

// FILTERMAIL_SKIP_DKIM turns the check off as for the relay's filtermail:
// with 1 or true, and nothing else.
func TestSkipDKIMValues(t *testing.T) {
	for v, want := range map[string]bool{"1": true, "true": true, "TRUE": true, "True": true,
		"": false, "0": false, "false": false, "yes": false, " 1": false} {
		if got := skipDKIM(v); got != want {
			t.Errorf("FILTERMAIL_SKIP_DKIM=%q: skip %v, want %v", v, got, want)
		}
	}
}
