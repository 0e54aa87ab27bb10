package mxdeliv

import "time"

// SetBodyIdleTimeout sets the wait of h for each read of a body, so that
// tests need not wait bodyIdleTimeout.
func SetBodyIdleTimeout(h *Handler, d time.Duration) { h.bodyIdle = d }
