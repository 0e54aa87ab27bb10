package dkim

import (
	"container/list"
	"sync"
	"time"
)

// cache holds key records by the name they were looked up at, each until
// its TTL runs out, and at most max of them: adding one more drops the one
// used least recently. It is safe for concurrent use.
type cache struct {
	max int

	mu    sync.Mutex
	order *list.List               // of *cacheEntry, most recently used first
	items map[string]*list.Element // by name
}

type cacheEntry struct {
	name          string
	records       []string
	authenticated bool
	expires       time.Time
}

func newCache(max int) *cache {
	return &cache{max: max, order: list.New(), items: map[string]*list.Element{}}
}

// get returns the entry of name if it has not expired at now.
func (c *cache) get(name string, now time.Time) (cacheEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[name]
	if !ok {
		return cacheEntry{}, false
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expires) {
		c.order.Remove(el)
		delete(c.items, name)
		return cacheEntry{}, false
	}
	c.order.MoveToFront(el)
	return *e, true
}

// put adds or replaces the entry of e.name.
func (c *cache) put(e cacheEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[e.name]; ok {
		*el.Value.(*cacheEntry) = e
		c.order.MoveToFront(el)
		return
	}
	c.items[e.name] = c.order.PushFront(&e)
	for c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.items, last.Value.(*cacheEntry).name)
	}
}

// len returns how many entries the cache holds, expired ones included.
func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
