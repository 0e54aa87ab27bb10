package tlspolicy

import "time"

// SetNow makes c take the time from now, before c is first used.
func SetNow(c *Checker, now func() time.Time) { c.now = now }

// Cached returns how many domains c keeps a policy or a failure for.
func Cached(c *Checker) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.policies.len()
}
