package dns

import (
	"container/list"
	"context"
	"net"
	"strings"
	"sync"
	"time"

	mdns "github.com/miekg/dns"
)

// DefaultCacheSize is how many answers a Cache keeps when NewCache is given
// no size. An answer kept takes some hundred bytes (an address about 350, a
// DKIM key about 800) and no more than a few kilobytes (see
// maxAnswerBytes), so the default costs a few megabytes, some tens at most.
const DefaultCacheSize = 10000

// Bounds of what a Cache keeps.
const (
	// maxTTL caps how long an answer is kept, whatever its TTL: a record
	// changed ahead of its TTL (a relay moving, a key rolled over in
	// haste) is seen within the hour. The relay's own resolver caches
	// the answer for its full TTL, so asking it once an hour costs little.
	maxTTL = time.Hour

	// negativeTTL is how long a Cache keeps the answer that a name does
	// not exist (NXDOMAIN) or has no record of the type asked (NODATA).
	// RFC 2308 keeps such answers for the SOA minimum of the zone, which
	// the Resolver does not return; 30 seconds is below the SOA minimum
	// of nearly every zone (RFC 2308 recommends one to three hours;
	// common values are 5 minutes to a day), so a negative answer is never
	// kept much longer than the resolver keeps it itself, and a record
	// just published, or a transient NXDOMAIN, is seen within half a
	// minute. Yet a burst of deliveries to a domain without MTA-STS or
	// DANE records, the common case, asks once.
	negativeTTL = 30 * time.Second

	// maxAnswerRecords and maxAnswerBytes bound the answers kept: one
	// with more records, or whose records take more bytes (as mdns.Len
	// counts them, about their size on the wire), is passed on and not
	// kept, so that size bounds the memory of the cache. The answers the
	// daemon asks for are well within: a 4096-bit DKIM key (about 800
	// bytes), an MTA-STS record, a few MX hosts, addresses or TLSA
	// records.
	maxAnswerRecords = 16
	maxAnswerBytes   = 2048
)

// Cache answers lookups from a bounded cache in front of a *Resolver. It
// is safe for concurrent use; there is no state shared between caches.
//
// An answer is kept for its TTL, at most an hour, and keyed by its type and
// its name in lower case without a final dot; a TTL of 0 is not kept. The
// TTL of an answer from the cache is what is left of the time it is kept,
// in whole seconds; its Authenticated bit is the one the answer came with.
// Each lookup makes its answer anew from the records kept, so a caller may
// change the slices of its answer.
//
// A name that does not exist (an error with IsNotFound set) and a name
// without records of the type asked (an empty answer, or an error with
// IsNotFound set for TXT) are kept for 30 seconds, or the TTL of a CNAME
// they came through if shorter (RFC 2308 would keep them for the zone's
// SOA minimum, which is not known here); an empty answer's TTL is what is
// left of those 30 seconds. Temporary failures (SERVFAIL, REFUSED,
// timeouts, a cancelled lookup) and other errors are never kept: the next
// lookup asks again.
//
// At most size answers are kept, the least recently used forgotten first;
// an answer of more than 16 records, or of more than 2048 bytes of records,
// is not kept.
//
// Concurrent lookups of one type and name share one query to the server.
// That query runs on its own, bounded as a Resolver's queries are
// (QueryTimeout); it keeps the values of the context of the caller that
// started it, but not its deadline or cancellation. A caller whose context
// ends stops waiting, with a temporary error, and the others go on
// waiting; the answer is kept even if nobody waits for it any longer.
// LookupAddrs asks for AAAA and A records: each is kept on its own, so a
// temporary failure of one is not kept with the other.
type Cache struct {
	r     *Resolver // asks the server; its lookups are not cached
	front *Resolver // makes the lookups, from answers that c.exchange gives
	size  int

	// query asks the server, and now tells the time; tests replace them.
	query func(ctx context.Context, name string, qtype uint16) (answer, error)
	now   func() time.Time

	mu      sync.Mutex
	entries map[cacheKey]*list.Element // of *cacheEntry
	lru     *list.List                 // of *cacheEntry, most recently used first
	flight  map[cacheKey]*flight       // queries under way
}

// cacheKey identifies an answer: its type, and its name in lower case
// without the final dot.
type cacheKey struct {
	qtype uint16
	name  string
}

// cacheEntry is one answer kept: records, or a name not found.
type cacheEntry struct {
	key     cacheKey
	ans     answer
	err     *net.DNSError // IsNotFound, or nil
	expires time.Time
}

// flight is one query under way; done is closed when ans and err are set.
type flight struct {
	done chan struct{}
	ans  answer
	err  error
}

// NewCache returns a cache of at most size answers in front of r; a size
// below 1 means DefaultCacheSize.
func NewCache(r *Resolver, size int) *Cache {
	if size < 1 {
		size = DefaultCacheSize
	}
	c := &Cache{
		r:       r,
		size:    size,
		query:   r.exchange,
		now:     time.Now,
		entries: map[cacheKey]*list.Element{},
		lru:     list.New(),
		flight:  map[cacheKey]*flight{},
	}
	c.front = &Resolver{server: r.server, cache: c}
	return c
}

// LookupMX is Resolver.LookupMX, answered from the cache when it can be.
func (c *Cache) LookupMX(ctx context.Context, domain string) (MX, error) {
	return c.front.LookupMX(ctx, domain)
}

// LookupAddrs is Resolver.LookupAddrs, answered from the cache when it can
// be. Its TTL is the smaller of those left to the AAAA and A answers.
func (c *Cache) LookupAddrs(ctx context.Context, host string) (Addrs, error) {
	return c.front.LookupAddrs(ctx, host)
}

// LookupTXT is Resolver.LookupTXT, answered from the cache when it can be.
func (c *Cache) LookupTXT(ctx context.Context, name string) (TXT, error) {
	return c.front.LookupTXT(ctx, name)
}

// LookupTLSA is Resolver.LookupTLSA, answered from the cache when it can be.
func (c *Cache) LookupTLSA(ctx context.Context, name string) (TLSA, error) {
	return c.front.LookupTLSA(ctx, name)
}

// exchange answers what Resolver.exchange answers, from the cache or from a
// query, shared with the other lookups of the same key under way. The
// records of an answer are shared and must not be changed.
func (c *Cache) exchange(ctx context.Context, name string, qtype uint16) (answer, error) {
	key := cacheKey{qtype: qtype, name: strings.ToLower(strings.TrimSuffix(name, "."))}
	now := c.now()
	c.mu.Lock()
	if el, ok := c.entries[key]; ok {
		e := el.Value.(*cacheEntry)
		if now.Before(e.expires) {
			c.lru.MoveToFront(el)
			c.mu.Unlock()
			if e.err != nil {
				return answer{}, renamed(e.err, name)
			}
			ans := e.ans
			ans.ttl = e.expires.Sub(now).Truncate(time.Second)
			return ans, nil
		}
		c.remove(el)
	}
	f, ok := c.flight[key]
	if !ok {
		f = &flight{done: make(chan struct{})}
		c.flight[key] = f
		go c.run(context.WithoutCancel(ctx), key, name, f)
	}
	c.mu.Unlock()

	select {
	case <-f.done:
		return f.ans, renamed(f.err, name)
	case <-ctx.Done():
		return answer{}, c.r.netError(name, ctx.Err())
	}
}

// run makes the query of f, keeps its answer if it may be kept, and then
// tells those waiting for it.
func (c *Cache) run(ctx context.Context, key cacheKey, name string, f *flight) {
	ans, err := c.query(ctx, name, key.qtype)
	keep := kept(ans, err)
	now := c.now()
	if keep > 0 {
		ans.ttl = keep
	}
	f.ans, f.err = ans, err

	c.mu.Lock()
	delete(c.flight, key)
	if keep > 0 {
		e := &cacheEntry{key: key, ans: ans, expires: now.Add(keep)}
		if de, ok := err.(*net.DNSError); ok {
			e.err = de // a name not found: kept keeps no other error
		}
		c.add(e)
	}
	c.mu.Unlock()
	close(f.done)
}

// kept returns how long an answer may be kept; 0 if not at all.
func kept(ans answer, err error) time.Duration {
	if err != nil {
		if de, ok := err.(*net.DNSError); ok && de.IsNotFound && !de.IsTemporary && !de.IsTimeout {
			return negativeTTL
		}
		return 0
	}
	if len(ans.records) == 0 {
		// The TTL of an empty answer is that of the CNAMEs it came
		// through, if any.
		if ans.ttl > 0 {
			return min(ans.ttl, negativeTTL)
		}
		return negativeTTL
	}
	if len(ans.records) > maxAnswerRecords {
		return 0
	}
	n := 0
	for _, rr := range ans.records {
		n += mdns.Len(rr)
	}
	if n > maxAnswerBytes {
		return 0
	}
	return min(ans.ttl, maxTTL).Truncate(time.Second)
}

// add keeps e, forgetting the least recently used answer if the cache is
// full. c.mu is held.
func (c *Cache) add(e *cacheEntry) {
	if el, ok := c.entries[e.key]; ok {
		c.remove(el)
	}
	c.entries[e.key] = c.lru.PushFront(e)
	for c.lru.Len() > c.size {
		c.remove(c.lru.Back())
	}
}

// remove forgets the answer of el. c.mu is held.
func (c *Cache) remove(el *list.Element) {
	delete(c.entries, el.Value.(*cacheEntry).key)
	c.lru.Remove(el)
}

// renamed returns err naming name, the name as this caller asked it: an
// error is shared by lookups that differ in case or final dot.
func renamed(err error, name string) error {
	de, ok := err.(*net.DNSError)
	if !ok {
		return err
	}
	e := *de
	e.Name = name
	return &e
}
