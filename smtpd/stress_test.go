package smtpd

import (
	"context"
	"io"
	"log"
	"net"
	"strings"
	"testing"
	"time"

	"filtermail/activation"
	"filtermail/filter"
	"filtermail/filter/filtertest"
	"filtermail/gate"
	"filtermail/internal/logtest"
	"filtermail/metrics"
	"filtermail/postfix"
	"filtermail/smtpd/smtpdtest"
)

// With every connection taken by clients that say nothing, and as many
// waiting behind them, a client that comes next is served within a few
// times the stress timeout, not the read timeout: idle clients make room.
func TestStress(t *testing.T) {
	sink := smtpdtest.NewSink(t, smtpdtest.Accept)
	m := metrics.New(Outgoing.String(), "test")
	var logBuf logtest.Buffer
	logger := log.New(&logBuf, "", 0)
	g := gate.New(gate.Options{
		Direction:     Outgoing,
		Policy:        &filter.Policy{},
		SendPerMinute: 60,
		SendBurst:     10,
		Handover:      &postfix.Reinjector{Addr: sink.Addr()},
		Log:           logger,
		Metrics:       m,
	})
	s := New(Options{Domain: "chat.example.org", MaxMessageBytes: 1 << 20, Gate: g, Log: logger, Metrics: m})
	const limit, stress = 20, 300 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Listen(ln)
	s.ln.Listener = activation.LimitListener(ln, limit)
	s.ln.stressAt, s.ln.stressIdle = limit, stress
	go s.Serve()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})

	// Twice the limit of clients that connect and say nothing.
	idle := make(chan string, 2*limit)
	for range 2 * limit {
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		go func() {
			conn.SetReadDeadline(time.Now().Add(time.Minute))
			b, _ := io.ReadAll(conn)
			idle <- string(b)
		}()
	}
	// A client in the middle of a transaction keeps its connection while
	// it is active.
	start := time.Now()
	c := smtpdtest.Dial(t, ln.Addr().String())
	from, to := "alice@chat.example.org", "bob@example.net"
	c.Want("MAIL FROM:<"+from+">", "250")
	c.Want("RCPT TO:<"+to+">", "250")
	c.WantData(filtertest.Encrypted(from, to, filtertest.GoCryptoV6(t, []byte("served"))), "250")
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("served after %v", d)
	}
	t.Logf("served after %v", time.Since(start).Round(time.Millisecond))
	got := <-idle
	if !strings.HasPrefix(got, "220 ") || !strings.Contains(got, "421 4.4.2") {
		t.Errorf("an idle client got %q, want the greeting and a 421", got)
	}
	if !strings.Contains(logBuf.String(), "SMTP connections at the limit (20)") {
		t.Errorf("no log line about the stress:\n%s", logBuf.String())
	}
}
