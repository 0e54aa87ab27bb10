package integration

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	msgauth "github.com/emersion/go-msgauth/dkim"
	"github.com/miekg/dns"

	"filtermail/internal/dkimtest"
	"filtermail/internal/dnstest"
)

// senders are the other relays that mail comes from in these tests: the
// DKIM keys of their domains, published in a DNS server of the test's own
// (on 127.0.0.1) that the relay's incoming filter asks
// (filtermail_dns_resolver), and OpenDKIM to sign with them, as relays
// sign.
type senders struct {
	t    testing.TB
	dns  *dnstest.Server
	keys map[string]*dkimtest.Key // RSA, selector "relay", by domain
}

func newSenders(t testing.TB) *senders {
	t.Helper()
	return &senders{t: t, dns: dnstest.Start(t), keys: map[string]*dkimtest.Key{}}
}

// param points the filter's lookups at the senders' DNS server.
func (s *senders) param() string { return "filtermail_dns_resolver = " + s.dns.Addr() }

// key returns the RSA-2048 key of domain, made and published the first
// time it is asked for.
func (s *senders) key(domain string) *dkimtest.Key {
	s.t.Helper()
	if k, ok := s.keys[domain]; ok {
		return k
	}
	k := s.publish(dkimtest.RSA, domain, "relay")
	s.keys[domain] = k
	return k
}

// publish makes a key and publishes its record.
func (s *senders) publish(alg dkimtest.Algorithm, domain, selector string) *dkimtest.Key {
	s.t.Helper()
	k := dkimtest.NewKey(s.t, alg, domain, selector)
	s.dns.TXT(k.Name(), k.TXT())
	return k
}

// sign returns msg signed by OpenDKIM, relaxed/relaxed, with the key of
// domain.
func (s *senders) sign(domain string, msg []byte) []byte {
	s.t.Helper()
	return dkimtest.SignOpenDKIM(s.t, s.key(domain), msg, "relaxed/relaxed")
}

// unreachable makes every lookup of domain's key answer SERVFAIL.
func (s *senders) unreachable(domain string) {
	s.dns.Rcode(s.key(domain).Name(), dns.RcodeServerFailure)
}

// verifies reports whether a copy from a maildir (lines ended with LF,
// Postfix's headers on top) still carries a valid DKIM signature of
// domain, its key looked up in the senders' DNS server: the signed header
// fields and the body arrived as they were signed.
func (s *senders) verifies(copy []byte, domain string) bool {
	s.t.Helper()
	msg := bytes.ReplaceAll(bytes.ReplaceAll(copy, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
	resolver := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, s.dns.Addr())
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	vs, err := msgauth.VerifyWithOptions(bytes.NewReader(msg), &msgauth.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) { return resolver.LookupTXT(ctx, name) },
	})
	if err != nil {
		s.t.Errorf("verifying the delivered copy: %v", err)
		return false
	}
	for _, v := range vs {
		if v.Err == nil && strings.EqualFold(v.Domain, domain) {
			return true
		}
		s.t.Logf("delivered copy: signature of %s: %v", v.Domain, v.Err)
	}
	return false
}

// forge returns msg with the domain of its From address replaced: the
// signature no longer covers the From header it has.
func forge(msg []byte, from, to string) []byte {
	return bytes.Replace(msg, []byte("\r\nFrom: <"+from+">\r\n"), []byte("\r\nFrom: <"+to+">\r\n"), 1)
}
