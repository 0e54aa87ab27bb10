package activation_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"filtermail/activation"
)

// quiet is how long a test watches for something that must not happen,
// such as a connection accepted past the limit; watchdog bounds every
// wait for something that must happen.
const (
	quiet    = 100 * time.Millisecond
	watchdog = 10 * time.Second
)

// accepted is the result of one Accept.
type accepted struct {
	conn net.Conn
	err  error
}

// acceptAsync calls Accept on ln and reports on the channel.
func acceptAsync(ln net.Listener) <-chan accepted {
	ch := make(chan accepted, 1)
	go func() {
		c, err := ln.Accept()
		ch <- accepted{c, err}
	}()
	return ch
}

// limited returns a LimitListener of n on a loopback port, closed when the
// test ends, and a function that connects to it.
func limited(t *testing.T, n int) (net.Listener, func() net.Conn) {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := activation.LimitListener(inner, n)
	t.Cleanup(func() { ln.Close() })
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	return ln, dial
}

func waitAccepted(t *testing.T, ch <-chan accepted) net.Conn {
	t.Helper()
	select {
	case a := <-ch:
		if a.err != nil {
			t.Fatalf("Accept: %v", a.err)
		}
		t.Cleanup(func() { a.conn.Close() })
		return a.conn
	case <-time.After(watchdog):
		t.Fatal("Accept still waits")
	}
	return nil
}

func notAccepted(t *testing.T, ch <-chan accepted, why string) {
	t.Helper()
	select {
	case a := <-ch:
		t.Fatalf("Accept returned (%v, %v) %s", a.conn, a.err, why)
	case <-time.After(quiet):
	}
}

// LimitListener has at most n connections open: the next is accepted
// when one closes, and a connection closed twice gives one slot back.
func TestLimitListener(t *testing.T) {
	const n = 3
	ln, dial := limited(t, n)
	var open []net.Conn
	for range n {
		dial()
		open = append(open, waitAccepted(t, acceptAsync(ln)))
	}
	dial()
	next := acceptAsync(ln)
	notAccepted(t, next, fmt.Sprintf("with %d connections open", n))

	// Closed twice: one slot.
	open[0].Close()
	open[0].Close()
	waitAccepted(t, next)
	dial()
	next = acceptAsync(ln)
	notAccepted(t, next, "after a connection closed twice let one more in")

	open[1].Close()
	waitAccepted(t, next)
}

// Close ends an Accept that waits for a slot.
func TestLimitListenerClose(t *testing.T) {
	ln, dial := limited(t, 1)
	dial()
	waitAccepted(t, acceptAsync(ln))
	dial()
	next := acceptAsync(ln)
	notAccepted(t, next, "with the one connection open")
	ln.Close()
	select {
	case a := <-next:
		if a.err == nil || !errors.Is(a.err, net.ErrClosed) {
			t.Errorf("Accept after Close: (%v, %v), want net.ErrClosed", a.conn, a.err)
		}
	case <-time.After(watchdog):
		t.Fatal("Accept still waits for a slot after Close")
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept on a closed listener: %v, want net.ErrClosed", err)
	}
	if err := ln.Close(); err == nil {
		t.Error("a second Close returned no error")
	}
}

// The connections of a LimitListener can be half-closed, as net/http does
// before it closes a connection whose request it did not read whole.
func TestLimitListenerCloseWrite(t *testing.T) {
	ln, dial := limited(t, 1)
	client := dial()
	c := waitAccepted(t, acceptAsync(ln))
	cw, ok := c.(interface{ CloseWrite() error })
	if !ok {
		t.Fatalf("%T has no CloseWrite", c)
	}
	io.WriteString(c, "bye")
	if err := cw.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	client.SetDeadline(time.Now().Add(watchdog))
	if got, err := io.ReadAll(client); err != nil || string(got) != "bye" {
		t.Fatalf("the client read %q, %v; want bye, then EOF", got, err)
	}
	io.WriteString(client, "still reading")
	buf := make([]byte, 32)
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "still reading" {
		t.Errorf("the server read %q, %v after CloseWrite", buf[:n], err)
	}
}
