package transport

import (
	"sync"

	"filtermail/metrics"
)

// slots bound the deliveries in flight: in all, and to each destination
// domain. A domain's count goes away when its last delivery ends.
type slots struct {
	mu        sync.Mutex
	total     int
	maxTotal  int
	perDomain map[string]int
	maxDomain int
}

func newSlots(maxTotal, maxDomain int) *slots {
	return &slots{maxTotal: maxTotal, maxDomain: maxDomain, perDomain: make(map[string]int)}
}

// Why a slot was not had: the limit label of busy refusals.
const (
	busyTotal  = metrics.BusyTotal
	busyDomain = metrics.BusyDomain
	busyMemory = metrics.BusyMemory
)

// take takes a slot for a delivery to domain. It returns "" when it did,
// or which limit was in the way.
func (s *slots) take(domain string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.total >= s.maxTotal {
		return busyTotal
	}
	if s.perDomain[domain] >= s.maxDomain {
		return busyDomain
	}
	s.total++
	s.perDomain[domain]++
	return ""
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
}
