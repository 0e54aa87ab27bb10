package main

import (
	"strings"
	"testing"

	"github.com/miekg/dns"

	"filtermail/internal/daemontest"
	"filtermail/internal/dkimtest"
	"filtermail/internal/dnstest"
)

// dkimOn turns the incoming filter's DKIM check on: FILTERMAIL_SKIP_DKIM
// empty.
var dkimOn = daemontest.Options{Env: []string{skipDKIM}}

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
