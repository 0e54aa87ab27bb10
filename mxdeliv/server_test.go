package mxdeliv_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"filtermail/mxdeliv"
)

// quiet is how long a test watches for something that must not happen,
// such as a connection accepted past the limit. It never fails a server
// that works; one that does not may pass it on a slow machine, but not
// every time.
const quiet = 100 * time.Millisecond

// With the listener full, a new connection waits, served as soon as one
// closes.
func TestConnectionsQueue(t *testing.T) {
	e := start(t, config{conns: 1})
	first := e.dial()
	first.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	e.expect(first.response(), http.StatusNotFound, "404 not found\n")
	// first is kept alive, and holds the one slot.

	second := e.dial()
	second.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	second.conn.SetReadDeadline(time.Now().Add(quiet))
	if n, err := second.br.Peek(1); err == nil {
		t.Fatalf("a second connection was served while the first was open: %q", n)
	}
	second.conn.SetReadDeadline(time.Now().Add(watchdog))
	first.conn.Close()
	e.expect(second.response(), http.StatusNotFound, "404 not found\n")
}

// Close and Shutdown end the server while the listener is full: Serve
// does not wait for a slot past them.
func TestCloseWhileFull(t *testing.T) {
	for _, stop := range []string{"Close", "Shutdown"} {
		t.Run(stop, func(t *testing.T) {
			e := start(t, config{conns: 1, server: func(s *http.Server) { s.ReadHeaderTimeout = time.Hour }})
			held := e.dial()
			held.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			e.expect(held.response(), http.StatusNotFound, "404 not found\n")
			waiting := e.dial()
			waiting.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")

			done := make(chan error, 1)
			go func() {
				if stop == "Close" {
					done <- e.srv.Close()
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), watchdog)
				defer cancel()
				done <- e.srv.Shutdown(ctx)
			}()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("%s: %v", stop, err)
				}
			case <-time.After(watchdog):
				t.Fatalf("%s still waits with the listener full", stop)
			}
			held.closed()
		})
	}
}

// A request whose header never ends is cut off by ReadHeaderTimeout, and
// its slot is free again.
func TestHeaderTimeout(t *testing.T) {
	srv := mxdeliv.NewServer(http.NotFoundHandler(), nil)
	if srv.ReadHeaderTimeout <= 0 || srv.IdleTimeout <= 0 || srv.MaxHeaderBytes < mxdeliv.MaxRecipients*100 {
		t.Errorf("NewServer: ReadHeaderTimeout %v, IdleTimeout %v, MaxHeaderBytes %d",
			srv.ReadHeaderTimeout, srv.IdleTimeout, srv.MaxHeaderBytes)
	}

	e := start(t, config{conns: 1, server: func(s *http.Server) { s.ReadHeaderTimeout = quiet }})
	before := e.statuses()
	c := e.dial()
	c.write("POST /mxdeliv HTTP/1.1\r\nHost: x\r\nX-MAIL-TO: " + bob + "\r\n")
	c.closed()
	e.notCounted(before)

	again := e.dial()
	again.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	e.expect(again.response(), http.StatusNotFound, "404 not found\n")
}

// A header over MaxHeaderBytes is refused; one with MaxRecipients
// ordinary recipients is not.
func TestHeaderSize(t *testing.T) {
	e := start(t, config{})
	c := e.dial()
	c.write("POST /mxdeliv HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-MAIL-TO: "+strings.Repeat("b", 200)+"@chat.example.org\r\n", 2000) + "\r\n")
	if got := c.response(); got.status != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("answer %d %q to a header of 430 KB", got.status, got.body)
	}
	to := make([]string, mxdeliv.MaxRecipients)
	for i := range to {
		to[i] = fmt.Sprintf("someone.with.a.long.name%d@chat.example.org", i)
	}
	e.expect(e.post(envelope(alice, to...), nil), http.StatusBadRequest, "500 Invalid DATA")
}

// A body that stops coming is cut off after the wait for one read: the
// sender hears a 4xx and tries again.
func TestBodyStalls(t *testing.T) {
	e := start(t, config{bodyIdle: quiet})
	before := e.statuses()
	c := e.dial()
	c.write(requestHead + "Content-Length: 1000\r\n\r\nFrom: <" + alice + ">\r\n")
	got := c.response()
	e.expect(got, http.StatusBadRequest, "451 4.4.2 Message not received whole, try again")
	e.countedOnce(before, http.StatusBadRequest)
	c.closed()
	e.noMail()
}

// An answer given before the body is read does not wait for the rest of
// the body longer than a read of the body may take, however the body
// comes; a client that sends its body keeps its connection.
func TestUnreadBody(t *testing.T) {
	e := start(t, config{bodyIdle: quiet})
	for _, tc := range []struct {
		name, head string
		status     int
	}{
		{"404", "POST /elsewhere HTTP/1.1\r\nHost: x\r\n", http.StatusNotFound},
		{"405", "PUT /mxdeliv HTTP/1.1\r\nHost: x\r\n", http.StatusMethodNotAllowed},
		{"no recipient", "POST /mxdeliv HTTP/1.1\r\nHost: x\r\nX-MAIL-FROM: " + alice + "\r\n", http.StatusBadRequest},
	} {
		for _, framing := range []string{"Content-Length: 1000\r\n\r\n0123456789", "Transfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n"} {
			t.Run(tc.name+" "+framing[:strings.IndexByte(framing, ':')], func(t *testing.T) {
				e := e.in(t)
				before := e.statuses()
				c := e.dial()
				c.write(tc.head + framing)
				got := c.response()
				if got.status != tc.status {
					t.Errorf("answer %d %q, want %d", got.status, got.body, tc.status)
				}
				e.countedOnce(before, tc.status)
				c.closed()
			})
		}
		t.Run(tc.name+" keep-alive", func(t *testing.T) {
			e := e.in(t)
			c := e.dial()
			for range 2 {
				before := e.statuses()
				c.write(tc.head + "Content-Length: 10\r\n\r\n0123456789")
				if got := c.response(); got.status != tc.status || got.close {
					t.Errorf("answer %d %q (closing %v), want %d and the connection kept", got.status, got.body, got.close, tc.status)
				}
				e.countedOnce(before, tc.status)
			}
		})
	}
}
