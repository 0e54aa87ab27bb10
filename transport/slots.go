package transport

import (
	"sync"
	"time"

	"filtermail/metrics"
)

// slots bound the deliveries in flight: in all, and to each destination
// domain. A domain's count goes away when its last delivery ends.
type slots struct {
	mu        sync.Mutex
	total     int
	maxTotal  int
	perDomain map[string]int
	freed     chan struct{} // closed, and made anew, when a slot is given back
}

func newSlots(maxTotal int) *slots {
	return &slots{maxTotal: maxTotal, perDomain: make(map[string]int), freed: make(chan struct{})}
}

// Why a slot was not had: the limit label of busy refusals.
const (
	busyTotal  = metrics.BusyTotal
	busyDomain = metrics.BusyDomain
	busyMemory = metrics.BusyMemory
)

// take takes a slot for a delivery to domain, of which at most limit may
// be in flight. It returns "" when it did, or which limit was in the way.
func (s *slots) take(domain string, limit int) string {
	why, _ := s.try(domain, limit)
	return why
}

// try is take, and says when a slot is given back next.
func (s *slots) try(domain string, limit int) (string, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.total >= s.maxTotal {
		return busyTotal, s.freed
	}
	if s.perDomain[domain] >= limit {
		return busyDomain, s.freed
	}
	s.total++
	s.perDomain[domain]++
	return "", nil
}

// takeWait is take, waiting up to wait for a slot of the domain's: a
// burst of mail for one domain waits a moment rather than go back to
// Postfix's queue for minutes. With every slot taken it does not wait.
func (s *slots) takeWait(domain string, limit int, wait time.Duration) string {
	why, freed := s.try(domain, limit)
	if why != busyDomain {
		return why
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for why == busyDomain {
		select {
		case <-freed:
		case <-timer.C:
			return why
		}
		why, freed = s.try(domain, limit)
	}
	return why
}

// full reports whether every slot is taken.
func (s *slots) full() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total >= s.maxTotal
}

// give gives back a slot taken for domain.
func (s *slots) give(domain string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total--
	if s.perDomain[domain]--; s.perDomain[domain] <= 0 {
		delete(s.perDomain, domain)
	}
	close(s.freed)
	s.freed = make(chan struct{})
}
