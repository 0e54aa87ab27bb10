package gate

import (
	"fmt"
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestRateLimiter(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	l := newRateLimiter(60, 10) // one a second, ten at once
	l.now = clock.now

	for i := 0; i < 10; i++ {
		if !l.Allow("alice@example.org") {
			t.Fatalf("message %d of the burst refused", i+1)
		}
	}
	if l.Allow("alice@example.org") || l.Allow("ALICE@example.org") {
		t.Fatal("message 11 allowed at once")
	}
	if !l.Allow("bob@example.org") {
		t.Fatal("another sender refused")
	}
	clock.advance(time.Second)
	if !l.Allow("alice@example.org") || l.Allow("alice@example.org") {
		t.Fatal("after one second, not exactly one more message")
	}
	clock.advance(time.Hour)
	for i := 0; i < 10; i++ {
		if !l.Allow("alice@example.org") {
			t.Fatalf("after an hour, message %d of the burst refused", i+1)
		}
	}
}

func TestRateLimiterMemoryBounded(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	l := newRateLimiter(60, 10)
	l.now = clock.now
	for i := 0; i < maxTrackedSenders; i++ {
		l.Allow(fmt.Sprintf("user%d@example.org", i))
	}
	if l.Allow("one-too-many@example.org") {
		t.Error("a sender beyond the bound was allowed and tracked")
	}
	if len(l.buckets) > maxTrackedSenders {
		t.Errorf("%d senders tracked, bound is %d", len(l.buckets), maxTrackedSenders)
	}
	// A second later, the tokens the senders took are back: a full table
	// makes room for a new sender at once.
	clock.advance(fullSweepEvery)
	if !l.Allow("next@example.org") {
		t.Error("new sender refused a second after the table filled")
	}
	// Once their buckets refill, the senders are forgotten.
	clock.advance(11 * time.Second)
	if !l.Allow("new@example.org") {
		t.Error("new sender refused after the others' buckets refilled")
	}
	if len(l.buckets) != 1 {
		t.Errorf("%d senders tracked after refill, want 1", len(l.buckets))
	}
}
