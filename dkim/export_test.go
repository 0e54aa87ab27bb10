package dkim

import "time"

// SetNow makes v's cache read the time from now.
func SetNow(v *Verifier, now func() time.Time) { v.now = now }
