package main

import (
	"testing"

	"filtermail/filter/filtertest"
	"filtermail/smtpd/smtpdtest"
)

// BenchmarkTransaction sends encrypted 10 KiB messages over one connection:
// straight to the sink (the baseline), and through the filtermail binary
// into the same sink. "sink-reconnect" is the baseline with a connection
// per message, as filtermail's reinjection makes them.
func BenchmarkTransaction(b *testing.B) {
	msg := filtertest.Encrypted(alice, bob, filtertest.GoCryptoV6(b, make([]byte, 10<<10)))
	sink := smtpdtest.NewSink(b, smtpdtest.Accept)
	run := func(b *testing.B, addr string, reconnect bool) {
		b.SetBytes(int64(len(msg)))
		var c *smtpdtest.Client
		for b.Loop() {
			if c == nil {
				c = smtpdtest.Dial(b, addr)
			}
			if reply := c.Send(alice, []string{bob}, msg); reply[:3] != "250" {
				b.Fatalf("reply %q", reply)
			}
			if reconnect {
				c.Cmd("QUIT")
				c.Text.Close()
				c = nil
			}
		}
	}
	b.Run("sink", func(b *testing.B) { run(b, sink.Addr(), false) })
	b.Run("sink-reconnect", func(b *testing.B) { run(b, sink.Addr(), true) })
	b.Run("filtermail", func(b *testing.B) {
		d := startDaemon(b, "outgoing", sink.Port,
			"max_user_send_per_minute = 1000000", "max_user_send_burst_size = 1000000")
		run(b, d.addr(), false)
	})
}
