package gate

import (
	"strings"
	"sync"
	"time"
)

// maxTrackedSenders bounds the rate limiter's memory. Only senders whose
// allowance is not full again are tracked, so reaching this bound takes
// that many distinct senders within the time a message's token takes to
// come back (a second at the relay's default 60 a minute).
const maxTrackedSenders = 100_000

// fullSweepEvery is how often a full table is swept for a new sender:
// the senders whose bucket is full again make room, and the sweep's cost
// (some milliseconds for the whole table) stays bounded.
const fullSweepEvery = time.Second

// rateLimiter gives each sender a token bucket: burst messages at once,
// refilled at perMinute messages a minute.
type rateLimiter struct {
	perSecond float64
	burst     float64
	refill    time.Duration // time for an empty bucket to fill up
	now       func() time.Time

	mu        sync.Mutex
	buckets   map[string]bucket
	lastSweep time.Time
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newRateLimiter(perMinute, burst int) *rateLimiter {
	l := &rateLimiter{now: time.Now, buckets: make(map[string]bucket)}
	l.setRate(perMinute, burst)
	return l
}

// SetRate changes the allowance; the senders' buckets stay as they are.
func (l *rateLimiter) SetRate(perMinute, burst int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.setRate(perMinute, burst)
}

func (l *rateLimiter) setRate(perMinute, burst int) {
	l.perSecond = float64(perMinute) / 60
	l.burst = float64(burst)
	l.refill = time.Duration(l.burst / l.perSecond * float64(time.Second))
}

// Allow takes one message from sender's allowance and reports whether
// there was one. When too many senders are tracked, the table is swept
// for the new one; only if every tracked sender sent within the last
// moment is it refused too, until the next sweep.
func (l *rateLimiter) Allow(sender string) bool {
	key := strings.ToLower(sender)
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) >= l.refill {
		l.sweep(now)
	}
	b, ok := l.buckets[key]
	if !ok && len(l.buckets) >= maxTrackedSenders && now.Sub(l.lastSweep) >= fullSweepEvery {
		l.sweep(now)
	}
	if !ok {
		if len(l.buckets) >= maxTrackedSenders {
			return false
		}
		b = bucket{tokens: l.burst, at: now}
	}
	b.tokens = l.tokens(b, now)
	b.at = now
	allowed := b.tokens >= 1
	if allowed {
		b.tokens--
	}
	l.buckets[key] = b
	return allowed
}

func (l *rateLimiter) tokens(b bucket, now time.Time) float64 {
	return min(l.burst, b.tokens+now.Sub(b.at).Seconds()*l.perSecond)
}

// sweep forgets the senders whose bucket is full again: a new bucket would
// be the same.
func (l *rateLimiter) sweep(now time.Time) {
	for k, b := range l.buckets {
		if l.tokens(b, now) >= l.burst {
			delete(l.buckets, k)
		}
	}
	l.lastSweep = now
}
