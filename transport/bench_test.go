package transport_test

import (
	"strings"
	"sync/atomic"
	"testing"

	"filtermail/transport"
)

// BenchmarkDeliver measures messages delivered per second from LMTP to
// a relay on loopback, 16 LMTP connections at once, over each channel.
func BenchmarkDeliver(b *testing.B) {
	for _, ch := range []string{"https", "smtp"} {
		b.Run(ch, func(b *testing.B) {
			w := newWorldWith(b, transport.Options{})
			r := w.relay("other.example")
			if ch == "smtp" {
				r.https.Close()
			}
			msg := message(alice, bob) + strings.Repeat("x", 76) + "\r\n"
			for len(msg) < 6600 {
				msg += strings.Repeat("y", 76) + "\r\n"
			}
			var failed atomic.Int64
			b.SetParallelism(8) // 16 senders on 2 cores
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					got, err := w.trySend(alice, []string{bob}, msg)
					if err != nil || !strings.HasPrefix(got[bob], "250") {
						failed.Add(1)
					}
				}
			})
			b.StopTimer()
			if n := failed.Load(); n > 0 {
				b.Fatalf("%d messages not delivered", n)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
		})
	}
}
