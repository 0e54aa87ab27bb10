package tlspolicy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	moxdns "github.com/mjl-/mox/dns"
	"github.com/mjl-/mox/mtasts"
)

// Mode is the mode of an MTA-STS policy (RFC 8461 section 5).
type Mode int

const (
	// None: the domain has no policy, or one of mode "none".
	None Mode = iota
	// Testing: failures are to be reported, not acted on.
	Testing
	// Enforce: mail goes only to the MX hosts the policy lists, over
	// STARTTLS with a certificate valid for the host's name.
	Enforce
)

// String returns the mode as a policy writes it.
func (m Mode) String() string {
	switch m {
	case Testing:
		return "testing"
	case Enforce:
		return "enforce"
	}
	return "none"
}

// STS is the MTA-STS policy of a domain.
type STS struct {
	Mode Mode
	// MX holds the patterns of the MX hosts the policy allows, such as
	// "mx.example.org" or "*.example.org", in A-labels, lower case.
	MX []string
	// MaxAge is how long the policy may be used after it was fetched,
	// as it says, at most MaxMaxAge.
	MaxAge time.Duration
	// ID is the id of the TXT record the policy was fetched under.
	ID string
}

// Matches reports whether the policy allows mxHost, a host name as an MX
// record gives it, as RFC 8461 section 4.1 says: equal to a pattern, or a
// pattern "*.<domain>" with mxHost one label more than domain.
func (p STS) Matches(mxHost string) bool {
	host, err := moxdns.ParseDomainLax(strings.TrimSuffix(mxHost, "."))
	if err != nil {
		return false
	}
	var policy mtasts.Policy
	for _, pattern := range p.MX {
		mx := mtasts.MX{Wildcard: strings.HasPrefix(pattern, "*.")}
		d, err := moxdns.ParseDomain(strings.TrimPrefix(pattern, "*."))
		if err != nil {
			continue
		}
		mx.Domain = d
		policy.MX = append(policy.MX, mx)
	}
	return policy.Matches(host)
}

// Caching of policies.
//
// A policy is used until its max_age ends (at most MaxMaxAge), also when
// its TXT record has gone or its server cannot be reached: that is what
// MTA-STS protects with, as an attacker who blocks the record or the fetch
// must then wait out max_age before a downgrade works (RFC 8461 sections
// 3.1 and 5.1). Capping it at a day would hand over that protection after
// a day of blocking; the memory held is bounded by the number of domains
// kept, not by time.
//
// While its TXT record keeps the same id, a policy is fetched again after
// RefreshAfter (or its max_age, if shorter): a policy changed without a new
// id is seen within a day, and a fetch a day per domain costs nothing. A
// new id is fetched at once. A fetch that failed is not tried again for
// the same id within RetryAfter, the pause RFC 8461 section 3.3 suggests,
// so that a domain whose policy server is down does not hold up every
// delivery to it.
const (
	MaxMaxAge    = 31557600 * time.Second // RFC 8461 section 3.2: about a year
	RefreshAfter = 24 * time.Hour
	RetryAfter   = 5 * time.Minute
)

// STS returns the MTA-STS policy of domain. It looks up the TXT record
// _mta-sts.<domain> ("v=STSv1; id=…") and, when its id is not that of the
// policy kept, fetches the policy over HTTPS.
//
// A domain without a record has Mode None and no error. When the record or
// the policy cannot be had, a policy kept that has not expired is returned
// (RFC 8461 section 5.1), also when the record has gone; with none kept,
// an error, wrapping ErrTemporary if the failure may pass. The caller then
// treats the domain as having no policy (RFC 8461 section 3.3).
func (c *Checker) STS(ctx context.Context, domain string) (STS, error) {
	d, err := moxdns.ParseDomainLax(strings.TrimSuffix(domain, "."))
	if err == nil && d.ASCII == "" {
		err = errors.New("empty")
	}
	if err != nil {
		return STS{}, fmt.Errorf("tlspolicy: MTA-STS policy of %q: not a domain name: %v", domain, err)
	}
	name := d.ASCII

	rec, recErr := c.lookupRecord(ctx, name)
	c.mu.Lock()
	kept, _ := c.policies.get(name)
	c.mu.Unlock()
	now := c.now()
	if !kept.usable(now) {
		kept = entry{}
	}

	switch {
	case recErr != nil && kept.has:
		c.logf("MTA-STS: %s: %v; using the policy kept, id %s", name, recErr, kept.sts.ID)
		return kept.sts, nil
	case recErr != nil:
		return STS{}, recErr
	case rec == nil && kept.has:
		// Removing a policy takes a policy of mode none under a new id
		// (RFC 8461 section 8.3), not only the record gone.
		return kept.sts, nil
	case rec == nil:
		return STS{Mode: None}, nil
	case kept.has && kept.sts.ID == rec.ID && now.Before(kept.refresh):
		return kept.sts, nil
	}

	sts, err := c.fetch(ctx, name, rec.ID)
	if err != nil && kept.has {
		return kept.sts, nil
	}
	return sts, err
}

// lookupRecord returns the MTA-STS record of domain, given in A-labels, or
// nil if it has none. A TXT record not starting with "v=STSv1;" is not one
// (RFC 8461 section 3.1).
func (c *Checker) lookupRecord(ctx context.Context, domain string) (*mtasts.Record, error) {
	name := "_mta-sts." + domain
	if c.resolver == nil {
		return nil, fmt.Errorf("tlspolicy: MTA-STS record %s: no resolver", name)
	}
	txt, err := c.resolver.LookupTXT(ctx, name)
	var de *net.DNSError
	switch {
	case errors.As(err, &de) && de.IsNotFound:
		return nil, nil
	case err != nil:
		err = fmt.Errorf("tlspolicy: MTA-STS record %s: %w", name, err)
		if de != nil && de.IsTemporary {
			err = temporary(err)
		}
		return nil, err
	}
	var rec *mtasts.Record
	n := 0
	for _, s := range txt.Records {
		r, isSTS, err := mtasts.ParseRecord(s)
		if !isSTS {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("tlspolicy: MTA-STS record %s: %q: %w", name, s, err)
		}
		rec = r
		n++
	}
	if n > 1 {
		return nil, fmt.Errorf("tlspolicy: MTA-STS record %s: %d records, want one: %w", name, n, mtasts.ErrMultipleRecords)
	}
	return rec, nil
}

// stsOf returns the STS of a policy fetched under id.
func stsOf(p *mtasts.Policy, id string) STS {
	sts := STS{ID: id, MaxAge: min(time.Duration(p.MaxAgeSeconds)*time.Second, MaxMaxAge)}
	switch p.Mode {
	case mtasts.ModeEnforce:
		sts.Mode = Enforce
	case mtasts.ModeTesting:
		sts.Mode = Testing
	}
	for _, mx := range p.MX {
		pattern := mx.Domain.ASCII
		if mx.Wildcard {
			pattern = "*." + pattern
		}
		sts.MX = append(sts.MX, pattern)
	}
	return sts
}
