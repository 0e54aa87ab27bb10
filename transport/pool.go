package transport

import (
	"sync"
	"time"
)

// Connection reuse, as Postfix's connection cache: an idle connection is
// kept a minute, a connection is used for at most five minutes
// (smtp_connection_reuse_time_limit) and a hundred transactions.
const (
	idleTimeout = time.Minute
	maxConnAge  = 5 * time.Minute
	maxConnUses = 100
	maxIdle     = 256
)

// pool keeps SMTP connections between transactions, by host and the TLS
// they were made with: at most perHost for each, as many as deliveries to
// one domain can use at once, and maxIdle in all.
type pool struct {
	mu      sync.Mutex
	idle    map[string][]*smtpConn
	n       int
	perHost int
	closed  bool
}

func newPool(perHost int) *pool { return &pool{idle: make(map[string][]*smtpConn), perHost: perHost} }

// get returns the connection to key that was idle the shortest, or nil.
func (p *pool) get(key string) *smtpConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	for list := p.idle[key]; len(list) > 0; {
		c := list[len(list)-1]
		list = list[:len(list)-1]
		p.n--
		if len(list) == 0 {
			delete(p.idle, key)
		} else {
			p.idle[key] = list
		}
		if c.fit(time.Now()) {
			return c
		}
		c.Close()
	}
	return nil
}

// fit reports whether an idle connection may still be used.
func (c *smtpConn) fit(now time.Time) bool {
	return now.Sub(c.used) < idleTimeout && now.Sub(c.born) < maxConnAge && c.uses < maxConnUses
}

// put keeps c for the next transaction to its host, or closes it.
func (p *pool) put(c *smtpConn) {
	c.used = time.Now()
	c.uses++
	p.mu.Lock()
	keep := !p.closed && c.fit(c.used) && len(p.idle[c.key]) < p.perHost && p.n < maxIdle
	if keep {
		p.idle[c.key] = append(p.idle[c.key], c)
		p.n++
	}
	p.mu.Unlock()
	if !keep {
		// Not on the delivery's time: its reply is due now.
		go c.quit()
	}
}

// sweep closes the connections that are no longer fit for use.
func (p *pool) sweep(now time.Time) {
	var stale []*smtpConn
	p.mu.Lock()
	for key, list := range p.idle {
		kept := list[:0]
		for _, c := range list {
			if c.fit(now) {
				kept = append(kept, c)
			} else {
				stale = append(stale, c)
			}
		}
		if len(kept) == 0 {
			delete(p.idle, key)
		} else {
			p.idle[key] = kept
		}
	}
	p.n -= len(stale)
	p.mu.Unlock()
	for _, c := range stale {
		c.quit()
	}
}

// close closes every idle connection; connections put back later are
// closed too.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle, p.n = map[string][]*smtpConn{}, 0
	p.mu.Unlock()
	for _, list := range idle {
		for _, c := range list {
			c.quit()
		}
	}
}

// hostMemory remembers hosts for a while: those whose HTTPS endpoint
// failed while their SMTP server took mail. It holds a bounded number.
type hostMemory struct {
	mu    sync.Mutex
	until map[string]time.Time
	max   int
	ttl   time.Duration
}

func newHostMemory(max int, ttl time.Duration) *hostMemory {
	return &hostMemory{until: make(map[string]time.Time), max: max, ttl: ttl}
}

// has reports whether host is remembered now.
func (m *hostMemory) has(host string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	until, ok := m.until[host]
	if ok && time.Now().After(until) {
		delete(m.until, host)
		return false
	}
	return ok
}

// add remembers host for the memory's time. When the memory is full of
// hosts still remembered, host is not.
func (m *hostMemory) add(host string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	if len(m.until) >= m.max {
		for h, until := range m.until {
			if now.After(until) {
				delete(m.until, h)
			}
		}
		if len(m.until) >= m.max {
			return
		}
	}
	m.until[host] = now.Add(m.ttl)
}
