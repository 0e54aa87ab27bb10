package transport

import "time"

// SetDeliveryTimeout shortens the time all deliveries of one message may
// take, so that tests of stalled relays end soon.
func SetDeliveryTimeout(t *Transport, d time.Duration) { t.deliveryTimeout = d }
