package transport_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	dto "github.com/prometheus/client_model/go"

	"filtermail/internal/testnet"
	"filtermail/transport"
)

// value reads one series of the transport's metrics: name with labels
// (name=value pairs).
func (w *world) value(name string, labels ...string) float64 {
	w.t.Helper()
	families, err := w.metrics.Registry().Gather()
	if err != nil {
		w.t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if !hasLabel(m, labels[i], labels[i+1]) {
					continue series
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	w.t.Fatalf("no series %s %v", name, labels)
	return 0
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// eventually waits until cond holds, failing the test after 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10 s for %s", what)
		}
	}
}

// stallDeliveries starts a relay for slow.example whose /mxdeliv never
// answers, sends one message to each of rcpts there, and waits until the
// relay holds them all. Each reply comes when its delivery ends.
func (w *world) stallDeliveries(t *testing.T, rcpts ...string) []<-chan map[string]string {
	t.Helper()
	slow := w.relay("slow.example")
	slow.https.Stall()
	var pending []<-chan map[string]string
	for _, rcpt := range rcpts {
		pending = append(pending, w.sendAsync(alice, []string{rcpt}, message(alice, rcpt)))
	}
	eventually(t, fmt.Sprintf("%d stalled deliveries", len(rcpts)), func() bool { return len(slow.https.Requests()) == len(rcpts) })
	return pending
}

// A destination that stalls takes its own slots only: more mail for it is
// answered "busy" at once, mail for others still goes. Every message is
// answered.
func TestBusyDomain(t *testing.T) {
	w := newWorldWith(t, transport.Options{MaxPerDomain: 1})
	transport.SetDeliveryTimeout(w.tr, 3*time.Second)
	w.relay("other.example")
	first := w.stallDeliveries(t, "x@slow.example")[0]

	start := time.Now()
	got := w.send(alice, []string{"y@slow.example", bob}, message(alice, bob))
	if !has(got["y@slow.example"], "RCPT 451 4.3.2 Transport busy") {
		t.Errorf("second message for the stalled domain: %q, want RCPT 451 4.3.2 Transport busy", got["y@slow.example"])
	}
	if !has(got[bob], "250", "(HTTPS)") {
		t.Errorf("message for another domain: %q", got[bob])
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the busy answer took %v", d)
	}
	if got := <-first; !has(got["x@slow.example"], "451 4.4.2") {
		t.Errorf("stalled delivery: %q, want 451 4.4.2 (timed out)", got["x@slow.example"])
	}
	if n := w.value("filtermail_transport_busy_total", "limit", "domain"); n != 1 {
		t.Errorf("busy_total{limit=domain} = %v, want 1", n)
	}
	if n := w.value("filtermail_transport_deliveries_in_flight"); n != 0 {
		t.Errorf("%v deliveries in flight after all were answered", n)
	}
}

// With every slot taken, MAIL is answered 421 at once.
func TestBusyTotal(t *testing.T) {
	w := newWorldWith(t, transport.Options{MaxDeliveries: 1})
	transport.SetDeliveryTimeout(w.tr, 3*time.Second)
	done := w.stallDeliveries(t, "x@slow.example")[0]
	got := w.send(alice, []string{bob}, message(alice, bob))
	if !has(got[bob], "MAIL 421 4.3.2 Transport busy") {
		t.Errorf("%q, want MAIL 421 4.3.2 Transport busy", got[bob])
	}
	<-done
	if n := w.value("filtermail_transport_busy_total", "limit", "total"); n != 1 {
		t.Errorf("busy_total{limit=total} = %v, want 1", n)
	}
}

// Message bytes in flight stay within the memory budget: a message that
// does not fit is answered "busy", not held.
func TestMemoryBudget(t *testing.T) {
	w := newWorldWith(t, transport.Options{MemoryBudget: 64 << 10})
	w.relay("other.example")
	big := message(alice, bob) + strings.Repeat("x", 100<<10) + "\r\n"
	if got := w.send(alice, []string{bob}, big); !has(got[bob], "MAIL 421 4.3.2") {
		t.Errorf("announced over the budget: %q, want MAIL 421 4.3.2", got[bob])
	}
	// Without SIZE, the message is refused when it outgrows the budget.
	c := w.dialLMTP()
	defer c.Close()
	if err := sendUnannounced(c, big); err == nil || !strings.Contains(err.Error(), "451") || !strings.Contains(err.Error(), "Transport busy") {
		t.Errorf("outgrowing the budget: %v, want 451 Transport busy", err)
	}
	if got := w.send(alice, []string{bob}, message(alice, bob)); !has(got[bob], "250") {
		t.Errorf("a small message after: %q", got[bob])
	}
	if n := w.value("filtermail_transport_busy_total", "limit", "memory"); n != 2 {
		t.Errorf("busy_total{limit=memory} = %v, want 2", n)
	}
}

// A stalled relay costs the delivery's time, then a 4xx: on the greeting,
// during the TLS handshake, after the data.
func TestStalledRelays(t *testing.T) {
	for _, tt := range []struct {
		name  string
		stall func(r *relay)
	}{
		{"HTTPS handshake, SMTP greeting", func(r *relay) { r.https.StallHandshake(); r.smtp.StallGreeting() }},
		{"HTTPS reply", func(r *relay) { r.https.Stall() }},
		{"SMTP end of data", func(r *relay) { r.https.Reply(404, ""); r.smtp.StallData() }},
	} {
		w := newWorld(t)
		transport.SetDeliveryTimeout(w.tr, time.Second)
		r := w.relay("other.example")
		tt.stall(r)
		start := time.Now()
		got := w.send(alice, []string{bob}, message(alice, bob))
		if !has(got[bob], "451 4.4.2") {
			t.Errorf("%s: %q, want 451 4.4.2", tt.name, got[bob])
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: answered after %v", tt.name, d)
		}
	}
}

// Stopping closes idle LMTP connections at once and cuts deliveries off
// at the deadline with a 4xx: Postfix keeps those messages.
func TestShutdown(t *testing.T) {
	w := newWorld(t)
	idle, err := net.Dial("tcp", w.lmtp)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	got := w.stallDeliveries(t, "x@slow.example")[0]

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := w.tr.Shutdown(ctx); err == nil {
		t.Error("Shutdown with a delivery cut off reported no error")
	}
	if r := <-got; !has(r["x@slow.example"], "451 4.3.2") {
		t.Errorf("cut-off delivery: %q, want 451 4.3.2", r["x@slow.example"])
	}
	idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 512)
	for {
		if _, err := idle.Read(buf); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Error("the idle connection was not closed")
			}
			break
		}
	}
}

// Connections are used again: HTTP keep-alive carries the next request.
func TestHTTPSKeepAlive(t *testing.T) {
	w := newWorld(t)
	r := w.relay("other.example")
	for range 3 {
		if got := w.send(alice, []string{bob}, message(alice, bob)); !has(got[bob], "250") {
			t.Fatalf("reply %q", got[bob])
		}
	}
	if n := r.https.Connections(); n != 1 {
		t.Errorf("%d connections for 3 messages, want 1", n)
	}
	if n := w.value("filtermail_transport_deliveries_total", "channel", "https", "outcome", "delivered"); n != 3 {
		t.Errorf("deliveries_total{https,delivered} = %v, want 3", n)
	}
}

// A domain no relay of which could be reached is suspended for a while:
// its recipients are answered 451 at once and wait in Postfix's queue.
// Mail for other domains goes on.
func TestUnreachableDomainSuspended(t *testing.T) {
	w := newWorld(t)
	w.dns.MX("down.example", 10, "mx.down.example")
	w.dns.A("mx.down.example", testnet.Host(t)) // nothing listens there
	w.relay("other.example")
	rcpt := "x@down.example"
	if got := w.send(alice, []string{rcpt}, message(alice, rcpt)); !has(got[rcpt], "451 4.4.1") {
		t.Fatalf("first message: %q, want 451 4.4.1", got[rcpt])
	}
	start := time.Now()
	got := w.send(alice, []string{rcpt, bob}, message(alice, rcpt))
	if !has(got[rcpt], "RCPT 451 4.4.1", "suspended") {
		t.Errorf("second message: %q, want RCPT 451 4.4.1 … suspended", got[rcpt])
	}
	if !has(got[bob], "250") {
		t.Errorf("mail for another domain: %q", got[bob])
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("answered after %v", d)
	}
	if n := w.value("filtermail_transport_suspended_total"); n != 1 {
		t.Errorf("suspended_total = %v, want 1", n)
	}
}

// A domain no relay of which has answered yet takes few deliveries at
// once: a stalling destination holds few of the connections all mail
// shares.
func TestSlowStart(t *testing.T) {
	w := newWorld(t)
	transport.SetDeliveryTimeout(w.tr, 3*time.Second)
	var rcpts []string
	for i := range 5 {
		rcpts = append(rcpts, fmt.Sprintf("u%d@slow.example", i))
	}
	pending := w.stallDeliveries(t, rcpts...)
	got := w.send(alice, []string{"v@slow.example"}, message(alice, bob))
	if !has(got["v@slow.example"], "RCPT 451 4.3.2 Transport busy") {
		t.Errorf("a 6th message for a new domain: %q, want RCPT 451 4.3.2 Transport busy", got["v@slow.example"])
	}
	for _, p := range pending {
		<-p
	}
}

// A message over the size bound is refused with 552 whether it said its
// SIZE or not, and the connection goes on.
func TestMessageTooLarge(t *testing.T) {
	w := newWorldWith(t, transport.Options{MaxMessageBytes: 16 << 10})
	w.relay("other.example")
	big := message(alice, bob) + strings.Repeat("x", 20<<10) + "\r\n"
	if got := w.send(alice, []string{bob}, big); !has(got[bob], "MAIL 552") {
		t.Errorf("with SIZE: %q, want MAIL 552", got[bob])
	}
	c := w.dialLMTP()
	defer c.Close()
	if err := sendUnannounced(c, big); err == nil || !strings.Contains(err.Error(), "552") {
		t.Errorf("without SIZE: %v, want 552", err)
	}
	if err := sendUnannounced(c, message(alice, bob)); err != nil {
		t.Errorf("the next message on the connection: %v", err)
	}
}

// dialLMTP connects an LMTP client to the transport.
func (w *world) dialLMTP() *smtp.Client {
	w.t.Helper()
	conn, err := net.Dial("tcp", w.lmtp)
	if err != nil {
		w.t.Fatal(err)
	}
	return smtp.NewClientLMTP(conn)
}

// sendUnannounced sends msg from alice to bob on c without SIZE, and
// returns the LMTP reply as an error, nil for 250.
func sendUnannounced(c *smtp.Client, msg string) error {
	if err := c.Mail(alice, nil); err != nil {
		return err
	}
	if err := c.Rcpt(bob, nil); err != nil {
		return err
	}
	wc, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := wc.Write([]byte(msg)); err != nil {
		return err
	}
	_, err = wc.CloseWithLMTPResponse()
	return err
}
