package filter_test

import (
	"bytes"
	"crypto/rand"
	"testing"

	"filtermail/filter"
	"filtermail/filter/filtertest"
)

// BenchmarkReadMessage reads encrypted messages of several sizes. Memory
// per operation stays flat as the message grows: the payload is streamed
// through the armor and packet checks, never copied whole.
func BenchmarkReadMessage(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"1KiB", 1 << 10}, {"1MiB", 1 << 20}, {"10MiB", 10 << 20}} {
		plain := make([]byte, size.n)
		rand.Read(plain)
		msg := filtertest.Encrypted("a@example.org", "b@example.org", filtertest.GoCryptoV6(b, plain))
		b.Run(size.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(msg)))
			for b.Loop() {
				if !filter.ReadMessage(bytes.NewReader(msg)).Encrypted {
					b.Fatal("not encrypted")
				}
			}
		})
	}
}
