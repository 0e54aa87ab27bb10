package postfix_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"filtermail/internal/testnet"
	"filtermail/metrics"
	"filtermail/postfix"
	"filtermail/smtpd/smtpdtest"
)

// handOver runs a whole hand-over of msg and returns the first error.
func handOver(ctx context.Context, r *postfix.Reinjector, to []string, msg []byte) error {
	tx, err := r.Begin(ctx, "a@chat.example.org", nil)
	if err != nil {
		return err
	}
	for _, rcpt := range to {
		if err := tx.Rcpt(rcpt); err != nil {
			tx.Abort()
			return err
		}
	}
	if _, err := tx.Write(msg); err != nil {
		tx.Abort()
		return err
	}
	return tx.Commit(ctx)
}

// Each way a hand-over ends: the reply the client is to hear, and the
// metrics label.
func TestHandOver(t *testing.T) {
	msg := []byte("From: <a@chat.example.org>\r\n\r\nhello\r\n.\r\n..\r\n")
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
			err := handOver(context.Background(), r, tt.to, msg)
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
			got := sink.Messages()
			if (tt.code == 0) != (len(got) == 1) {
				t.Fatalf("the sink has %d messages", len(got))
			}
			if tt.code == 0 && !bytes.Equal(got[0].Data, msg) {
				t.Errorf("the sink got %q, want %q", got[0].Data, msg)
			}
		})
	}
}

// A recipient Postfix refuses is left out, and the others get the message.
func TestRecipientRefused(t *testing.T) {
	sink := smtpdtest.NewSink(t, smtpdtest.RejectRcpt)
	tx, err := (&postfix.Reinjector{Addr: sink.Addr()}).Begin(context.Background(), "a@chat.example.org", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, rcpt := range []string{"b@example.net", "unknown@example.net", "c@example.net"} {
		err := tx.Rcpt(rcpt)
		var perr *postfix.Error
		if refused := errors.As(err, &perr) && perr.Reply.Code == 550; refused != strings.HasPrefix(rcpt, "unknown") {
			t.Errorf("%s: %v", rcpt, err)
		}
	}
	tx.Write([]byte("Subject: x\r\n\r\nhi\r\n"))
	if err := tx.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := sink.Messages(); len(got) != 1 || strings.Join(got[0].To, " ") != "b@example.net c@example.net" {
		t.Errorf("the sink has %+v", got)
	}
}

// An aborted hand-over leaves nothing with Postfix, at any point; a
// connection whose transaction ended before its body serves the next,
// and a large body goes in many chunks.
func TestAbort(t *testing.T) {
	sink := smtpdtest.NewSink(t, smtpdtest.Accept)
	r := &postfix.Reinjector{Addr: sink.Addr()}
	large := bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n"), 1<<14) // 1 MiB
	for _, sent := range []int{-1, 0, 100, len(large)} {
		tx, err := r.Begin(context.Background(), "a@chat.example.org", nil)
		if err != nil {
			t.Fatal(err)
		}
		if sent >= 0 {
			if err := tx.Rcpt("b@example.net"); err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Write(large[:sent]); err != nil {
				t.Fatal(err)
			}
		}
		tx.Abort()
	}
	if err := handOver(context.Background(), r, []string{"b@example.net"}, large); err != nil {
		t.Fatal(err)
	}
	if got := sink.Messages(); len(got) != 1 || !bytes.Equal(got[0].Data, large) {
		t.Errorf("the sink has %d messages, want the committed one only", len(got))
	}
	// -1 and 0: kept (the envelope only); 100 and all of it: chunks
	// went, closed after the RSET.
	if n := sink.Connections(); n != 3 {
		t.Errorf("%d connections, want 3", n)
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

// stalledPostfix is a reinjection smtpd that takes the envelope, answers
// DATA with 354 and then reads nothing more: the client's writes of a
// large body block.
func stalledPostfix(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() {
				r := bufio.NewReader(c)
				fmt.Fprintf(c, "220 stalled ESMTP\r\n")
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					switch verb := strings.ToUpper(strings.Fields(line + " x")[0]); verb {
					case "EHLO":
						fmt.Fprintf(c, "250-stalled\r\n250 8BITMIME\r\n")
					case "DATA":
						fmt.Fprintf(c, "354 go on\r\n")
						<-done // and read nothing more
						return
					default:
						fmt.Fprintf(c, "250 ok\r\n")
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		close(done)
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// A Postfix that stops reading the body costs the hand-over's time, not
// more: every write is bounded, and the transaction's context ends it.
func TestStalledBody(t *testing.T) {
	r := &postfix.Reinjector{Addr: stalledPostfix(t)}
	msg := bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n"), 1<<17) // 8.5 MB
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	err := handOver(ctx, r, []string{"b@example.net"}, msg)
	var perr *postfix.Error
	if !errors.As(err, &perr) || perr.Reply != postfix.ErrBroken {
		t.Errorf("error %v, want the 451 of a broken hand-over", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the hand-over returned after %v, with a timeout of 1 s", d)
	}
}

// However often health is asked, Postfix sees one connection while the
// answer stands.
func TestHealthCached(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			fmt.Fprintf(c, "220 ok\r\n")
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if strings.HasPrefix(strings.ToUpper(line), "QUIT") {
						fmt.Fprintf(c, "221 bye\r\n")
						return
					}
					fmt.Fprintf(c, "250 ok\r\n")
				}
			}()
		}
	}()
	r := &postfix.Reinjector{Addr: ln.Addr().String()}
	for range 200 {
		if err := r.Health(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if n := accepted.Load(); n != 1 {
		t.Errorf("200 health checks made %d connections, want 1", n)
	}
}

// A connection is kept between transactions, and one that Postfix closed
// meanwhile is not used again: the next message goes on a new one.
func TestConnectionKept(t *testing.T) {
	sink := smtpdtest.NewSink(t, smtpdtest.Accept)
	r := &postfix.Reinjector{Addr: sink.Addr()}
	msg := []byte("Subject: x\r\n\r\nhi\r\n")
	for range 3 {
		if err := handOver(context.Background(), r, []string{"b@example.net"}, msg); err != nil {
			t.Fatal(err)
		}
	}
	if n := sink.Connections(); n != 1 {
		t.Errorf("3 messages took %d connections, want 1", n)
	}
	sink.DropConnections()
	if err := handOver(context.Background(), r, []string{"b@example.net"}, msg); err != nil {
		t.Fatalf("after Postfix closed the kept connection: %v", err)
	}
	if n, m := sink.Connections(), len(sink.Messages()); n != 2 || m != 4 {
		t.Errorf("%d connections, %d messages; want 2 and 4", n, m)
	}
}

// A kept connection is closed once it has waited its time, even when no
// more mail comes.
func TestConnectionExpires(t *testing.T) {
	sink := smtpdtest.NewSink(t, smtpdtest.Accept)
	r := &postfix.Reinjector{Addr: sink.Addr()}
	if err := handOver(context.Background(), r, []string{"b@example.net"}, []byte("Subject: x\r\n\r\nhi\r\n")); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); sink.Open() > 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the kept connection is still open after 20 s")
		}
	}
}
