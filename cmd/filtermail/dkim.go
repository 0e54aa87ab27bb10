package main

import (
	"fmt"

	"filtermail/config"
	"filtermail/dkim"
	"filtermail/dns"
	"filtermail/metrics"
)

// newVerifier returns the DKIM verifier of the incoming filter, looking
// keys up through filtermail_dns_resolver and counting lookups in m.
func newVerifier(cfg *config.Config, m *metrics.Metrics) (*dkim.Verifier, error) {
	r, err := dns.NewResolver(cfg.DNSResolver)
	if err != nil {
		return nil, fmt.Errorf("filtermail_dns_resolver: %w", err)
	}
	return dkim.New(dkim.Options{
		Resolver: r,
		Observe:  func(l dkim.Lookup) { m.KeyLookup(keyLookupResult(l)) },
	}), nil
}

// keyLookupResult is the metrics label of a key lookup.
func keyLookupResult(l dkim.Lookup) string {
	switch {
	case l.Result != dkim.LookupOK:
		switch l.Result {
		case dkim.LookupNotFound:
			return metrics.KeyNotFound
		case dkim.LookupTempFail:
			return metrics.KeyTempFail
		}
		return metrics.KeyError
	case l.Cached:
		return metrics.KeyCached
	case l.Authenticated:
		return metrics.KeyAuthenticated
	}
	return metrics.KeyUnauthenticated
}
