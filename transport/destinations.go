package transport

import (
	"sync"
	"time"
)

// How deliveries to a domain went lately changes how the next ones are
// taken, as Postfix's queue manager does with its destinations:
//
//   - A domain no relay of which answered lately (slow start) gets at most
//     initialPerDomain deliveries at once, as Postfix's
//     initial_destination_concurrency: mail for a domain whose relays
//     stall takes few of the LMTP connections that all mail shares.
//   - A domain whose relays could not be reached at all is suspended for
//     suspendTime: its recipients are answered 451 at once, and Postfix
//     tries them again later, as it does for a destination it marked dead.
//     The first delivery after that is the probe.
const (
	initialPerDomain = 5
	provenTime       = 30 * time.Minute
	suspendTime      = 2 * time.Minute
	maxDestinations  = 10000
)

// destinations remember, for a bounded number of domains, whether a
// relay of theirs answered lately and whether they are suspended.
type destinations struct {
	mu sync.Mutex
	m  map[string]*domainState
}

// domainState is what is remembered of one domain.
type domainState struct {
	proven    time.Time // until then, the domain is known to answer
	suspended time.Time // until then, the domain is not tried
	reason    string    // why it was suspended
}

func newDestinations() *destinations { return &destinations{m: make(map[string]*domainState)} }

// limit is how many deliveries to domain may be in flight at once:
// max once a relay of the domain answered lately, else fewer.
func (d *destinations) limit(domain string, max int) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s := d.m[domain]; s != nil && time.Now().Before(s.proven) {
		return max
	}
	return min(initialPerDomain, max)
}

// suspended reports whether domain is not to be tried now, and why.
func (d *destinations) suspended(domain string) (string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s := d.m[domain]; s != nil && time.Now().Before(s.suspended) {
		return s.reason, true
	}
	return "", false
}

// reached records that a relay of domain answered.
func (d *destinations) reached(domain string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s := d.entry(domain); s != nil {
		s.proven = time.Now().Add(provenTime)
		s.suspended, s.reason = time.Time{}, ""
	}
}

// unreachable records that no relay of domain could be reached, and why.
func (d *destinations) unreachable(domain, reason string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s := d.entry(domain); s != nil {
		s.proven = time.Time{}
		s.suspended, s.reason = time.Now().Add(suspendTime), reason
	}
}

// entry returns what is remembered of domain, made if need be; nil when
// the memory is full of domains that still matter.
func (d *destinations) entry(domain string) *domainState {
	if s := d.m[domain]; s != nil {
		return s
	}
	if len(d.m) >= maxDestinations {
		now := time.Now()
		for k, s := range d.m {
			if now.After(s.proven) && now.After(s.suspended) {
				delete(d.m, k)
			}
		}
		if len(d.m) >= maxDestinations {
			return nil
		}
	}
	s := &domainState{}
	d.m[domain] = s
	return s
}
