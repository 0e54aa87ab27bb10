package postfix_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"testing"

	"filtermail/internal/testnet"
	"filtermail/metrics"
	"filtermail/postfix"
	"filtermail/smtpd/smtpdtest"
)

// Each way a hand-over ends: the reply the client is to hear, and the
// metrics label.
func TestSend(t *testing.T) {
	msg := []byte("From: <a@chat.example.org>\r\n\r\nhello\r\n")
	// A port that refuses connections: on a loopback host of the test's
	// own, where nothing listens.
	closed := net.JoinHostPort(testnet.Host(t), "10026")

	for _, tt := range []struct {
		name   string
		mode   smtpdtest.Mode
		to     []string
		addr   string
		code   int
		result string
	}{
		{"accepted", smtpdtest.Accept, []string{"b@example.net"}, "", 0, metrics.ReinjectOK},
		{"4xx at end of data", smtpdtest.TempFail, []string{"b@example.net"}, "", 451, metrics.ReinjectRefused4xx},
		{"5xx at end of data", smtpdtest.PermFail, []string{"b@example.net"}, "", 554, metrics.ReinjectRefused5xx},
		{"recipient refused", smtpdtest.RejectRcpt, []string{"b@example.net", "unknown@example.net"}, "", 550, metrics.ReinjectRefused5xx},
		{"broken off", smtpdtest.DropMidData, []string{"b@example.net"}, "", 451, metrics.ReinjectBroken},
		{"unreachable", smtpdtest.Accept, []string{"b@example.net"}, closed, 451, metrics.ReinjectUnreachable},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sink := smtpdtest.NewSink(t, tt.mode)
			addr := sink.Addr()
			if tt.addr != "" {
				addr = tt.addr
			}
			r := &postfix.Reinjector{Addr: addr}
			err := r.Send(context.Background(), "a@chat.example.org", nil, tt.to, bytes.NewReader(msg))
			if got := postfix.Result(err); got != tt.result {
				t.Errorf("result %s, want %s (%v)", got, tt.result, err)
			}
			var perr *postfix.Error
			switch {
			case tt.code == 0 && err != nil:
				t.Errorf("error %v", err)
			case tt.code != 0 && (!errors.As(err, &perr) || perr.Reply.Code != tt.code):
				t.Errorf("error %v, want a reply %d", err, tt.code)
			}
			if n := len(sink.Messages()); (tt.code == 0) != (n == 1) {
				t.Errorf("the sink has %d messages", n)
			}
		})
	}
}

func TestHealth(t *testing.T) {
	sink := smtpdtest.NewSink(t, smtpdtest.Accept)
	if err := (&postfix.Reinjector{Addr: sink.Addr()}).Health(context.Background()); err != nil {
		t.Errorf("health of a greeting server: %v", err)
	}
	closed := net.JoinHostPort(testnet.Host(t), "10026")
	if err := (&postfix.Reinjector{Addr: closed}).Health(context.Background()); err == nil {
		t.Error("health of a closed port: no error")
	}
}
