package transport_test

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"filtermail/transport"
)

// BenchmarkDeliver measures messages delivered per second from LMTP to
// a relay on loopback, 16 LMTP connections at once, over each channel,
// for messages of 6.6 KB and 1 MB.
func BenchmarkDeliver(b *testing.B) {
	for _, tt := range []struct {
		ch   string
		size int
	}{{"https", 6600}, {"smtp", 6600}, {"https", 1 << 20}, {"smtp", 1 << 20}} {
		ch := tt.ch
		b.Run(fmt.Sprintf("%s/%dKB", ch, tt.size>>10), func(b *testing.B) {
			w := newWorldWith(b, transport.Options{})
			r := w.relay("other.example")
			if ch == "smtp" {
				r.https.Close()
			}
			msg := message(alice, bob) + strings.Repeat("x", 76) + "\r\n"
			for len(msg) < tt.size {
				msg += strings.Repeat("y", 76) + "\r\n"
			}
			var failed atomic.Int64
			var failure atomic.Value
			b.SetParallelism(8) // 16 senders on 2 cores
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					got, err := w.trySend(alice, []string{bob}, msg)
					for err == nil && strings.Contains(got[bob], "Transport busy") {
						// As Postfix would, later.
						got, err = w.trySend(alice, []string{bob}, msg)
					}
					if err != nil || !strings.HasPrefix(got[bob], "250") {
						failed.Add(1)
						failure.Store(fmt.Sprint(got[bob], err))
					}
				}
			})
			b.StopTimer()
			if n := failed.Load(); n > 0 {
				b.Fatalf("%d messages not delivered, one: %v", n, failure.Load())
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
		})
	}
}
