package smtpd

import (
	"context"
	"log"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"filtermail/filter"
	"filtermail/gate"
	"filtermail/internal/logtest"
	"filtermail/metrics"
	"filtermail/postfix"
	"filtermail/smtpd/smtpdtest"
)

// The directions, as the tests here name them.
type Direction = gate.Direction

const (
	Outgoing = gate.Outgoing
	Incoming = gate.Incoming
)

// startFilter runs a filter for dir on a free port, reinjecting into
// sinkPort, without DKIM checks, and returns it with its metrics and log.
func startFilter(t *testing.T, dir Direction, sinkPort int) (*Server, *metrics.Metrics, *logtest.Buffer) {
	t.Helper()
	return startFilterIdle(t, dir, sinkPort, readTimeout)
}

// startFilterIdle is startFilter with idle as the read timeout.
func startFilterIdle(t *testing.T, dir Direction, sinkPort int, idle time.Duration) (*Server, *metrics.Metrics, *logtest.Buffer) {
	t.Helper()
	m := metrics.New(dir.String(), "test")
	var logBuf logtest.Buffer
	logger := log.New(&logBuf, "", 0)
	g := gate.New(gate.Options{
		Direction:     dir,
		Policy:        &filter.Policy{Markers: filter.Mailboxes{Dir: t.TempDir()}},
		SendPerMinute: 60,
		SendBurst:     10,
		Handover:      &postfix.Reinjector{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(sinkPort))},
		Log:           logger,
		Metrics:       m,
	})
	s := New(Options{Domain: "chat.example.org", MaxMessageBytes: 1 << 20, Gate: g, Log: logger, Metrics: m})
	s.idle = idle
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Listen(ln)
	go s.Serve()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return s, m, &logBuf
}

// counter reads the series of the metric name with the given label
// values (the direction label aside).
func counter(t *testing.T, m *metrics.Metrics, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if want, ok := labels[l.GetName()]; ok && want != l.GetValue() {
					continue series
				}
			}
			return s.GetCounter().GetValue()
		}
	}
	t.Fatalf("no %s%v", name, labels)
	return 0
}

// An outgoing sender that is not local@domain is refused at MAIL FROM and
// counted as bad_sender; no transaction is open after it.
func TestBadSenderAtMail(t *testing.T) {
	sink := smtpdtest.NewSink(t, smtpdtest.Accept)
	s, m, logBuf := startFilter(t, Outgoing, sink.Port)
	c, _ := dialServer(t, s)
	exchange(t, c, "EHLO client.test", 250)
	exchange(t, c, "MAIL FROM:<>", 500)
	exchange(t, c, "RCPT TO:<bob@example.net>", 502)
	exchange(t, c, `MAIL FROM:<"a@b"@chat.example.org>`, 500)
	exchange(t, c, "MAIL FROM:<a@b@chat.example.org>", 500)
	exchange(t, c, "DATA", 502)
	exchange(t, c, "QUIT", 221)

	badSender := map[string]string{"verdict": metrics.Refuse, "reason": "bad_sender"}
	if got := counter(t, m, "filtermail_messages_total", badSender); got != 3 {
		t.Errorf("bad_sender counted %v times, want 3", got)
	}
	if got := strings.Count(logBuf.String(), "Outgoing: refuse (bad_sender) at MAIL FROM.\n"); got != 3 {
		t.Errorf("%d log lines for bad_sender, want 3:\n%s", got, logBuf)
	}
	if strings.Contains(logBuf.String(), "@") {
		t.Errorf("the log holds an address:\n%s", logBuf)
	}
	if len(sink.Messages()) != 0 {
		t.Error("something was reinjected")
	}
}

// A MAIL inside a transaction is refused as Postfix refuses it, and the
// transaction goes on with its sender and recipients, even while the
// filter drains.
func TestNestedMail(t *testing.T) {
	for _, dir := range []Direction{Outgoing, Incoming} {
		t.Run(dir.String(), func(t *testing.T) {
			sink := smtpdtest.NewSink(t, smtpdtest.Accept)
			s, m, _ := startFilter(t, dir, sink.Port)
			c, _ := dialServer(t, s)
			alice := "alice@chat.example.org"
			exchange(t, c, "EHLO client.test", 250)
			exchange(t, c, "MAIL FROM:<"+alice+">", 250)
			exchange(t, c, "RCPT TO:<bob@example.net>", 250)
			exchange(t, c, "MAIL FROM:<>", 503)
			exchange(t, c, "MAIL FROM:<carol@chat.example.org>", 503)
			exchange(t, c, "RCPT TO:<dave@example.net>", 250)

			go s.Shutdown(context.Background())
			time.Sleep(2 * drainGrace) // longer than a client between transactions may wait
			exchange(t, c, "DATA", 354)
			// Outgoing, no From header: only the transaction's own sender
			// keeps this from passing. Incoming, the From header is the
			// first sender's, so the envelope goes on as it is.
			msg := "To: <bob@example.net>\r\nSecure-Join: vc-request\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n" +
				"--x\r\nContent-Type: text/plain\r\n\r\nSecure-Join: vc-request\r\n--x--\r\n"
			if dir == Incoming {
				msg = "From: <" + alice + ">\r\n" + msg
			}
			w := c.DotWriter()
			w.Write([]byte(msg))
			w.Close()
			code, text, _ := c.ReadResponse(0)
			switch dir {
			case Outgoing:
				if code != 500 || text != "Invalid FROM <> for <"+alice+">" {
					t.Errorf("end of data: %d %s, want the From header refused for the first sender", code, text)
				}
				if n := len(sink.Messages()); n != 0 {
					t.Errorf("%d messages reinjected", n)
				}
			case Incoming:
				if code != 250 {
					t.Fatalf("end of data: %d %s", code, text)
				}
				got := sink.Messages()
				if len(got) != 1 || got[0].From != alice || strings.Join(got[0].To, ",") != "bob@example.net,dave@example.net" {
					t.Errorf("reinjected %+v, want one message from %s to both recipients", got, alice)
				}
			}
			if got := counter(t, m, "filtermail_smtp_commands_total", map[string]string{"command": "MAIL", "code_class": "5xx"}); got != 2 {
				t.Errorf("MAIL 5xx counted %v times, want 2", got)
			}
		})
	}
}
