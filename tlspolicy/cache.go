package tlspolicy

import (
	"container/list"
	"time"
)

// entry is what the Checker knows of one domain's MTA-STS policy.
type entry struct {
	domain string

	// The last policy fetched, if has is set.
	has     bool
	sts     STS
	refresh time.Time // fetched again from then on, even under the same id
	expires time.Time // not used from then on

	// The last fetch that failed, if failedAt is set.
	failedID string
	failedAt time.Time
	failure  error
}

// usable reports whether e holds a policy that has not expired at now.
func (e entry) usable(now time.Time) bool {
	return e.has && now.Before(e.expires)
}

// cache holds entries by domain, up to max of them, forgetting the least
// recently used first. Its user serialises access.
type cache struct {
	max   int
	order *list.List // of entry, the most recently used first
	byKey map[string]*list.Element
}

func newCache(size int) *cache {
	if size <= 0 {
		size = DefaultCacheSize
	}
	return &cache{max: size, order: list.New(), byKey: map[string]*list.Element{}}
}

// get returns the entry of domain, or false.
func (c *cache) get(domain string) (entry, bool) {
	el := c.byKey[domain]
	if el == nil {
		return entry{}, false
	}
	c.order.MoveToFront(el)
	return el.Value.(entry), true
}

// put stores e under e.domain.
func (c *cache) put(e entry) {
	if el := c.byKey[e.domain]; el != nil {
		el.Value = e
		c.order.MoveToFront(el)
		return
	}
	c.byKey[e.domain] = c.order.PushFront(e)
	for c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.byKey, last.Value.(entry).domain)
	}
}

// len returns the number of entries.
func (c *cache) len() int { return c.order.Len() }
