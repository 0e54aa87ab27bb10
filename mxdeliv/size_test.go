package mxdeliv_test

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"filtermail/metrics"
)

// The limit of the size tests: max_message_size.
const limit = 4 << 10

// requestHead is the start of a POST /mxdeliv from alice to bob, up to the
// headers that say how long the body is.
const requestHead = "POST /mxdeliv HTTP/1.1\r\nHost: relay.example\r\nX-MAIL-FROM: " + alice + "\r\nX-MAIL-TO: " + bob + "\r\n"

// A Content-Length over the limit is answered 413 at once, before a byte
// of the body is read: the body here never comes.
func TestTooLargeByLength(t *testing.T) {
	const first = "From: <" + alice + ">\r\n"
	for _, tc := range []struct {
		name, headers string
		rest          string // what the client sends after the answer
	}{
		{"huge", "Content-Length: 1099511627776\r\n", ""},
		{"Expect: 100-continue", "Content-Length: 1099511627776\r\nExpect: 100-continue\r\n", ""},
		// A body the server might read whole to keep the connection.
		{"one byte over", fmt.Sprintf("Content-Length: %d\r\n", limit+1), strings.Repeat("x", limit+1-len(first))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, config{maxBytes: limit})
			before := e.statuses()
			c := e.dial()
			c.write(requestHead + tc.headers + "\r\n" + first)
			got := c.response() // the first response: no 100 Continue
			e.expect(got, http.StatusRequestEntityTooLarge, "552 Message exceeds maximum size")
			e.countedOnce(before, http.StatusRequestEntityTooLarge)
			if !got.close {
				t.Error("no Connection: close, but the rest of the body is not read")
			}
			c.write(tc.rest)
			c.closed()
			if n := e.messagesCounted(metrics.Refuse, metrics.ReasonTooLarge); n != 1 {
				t.Errorf("refuse/%s counted %v times, want 1", metrics.ReasonTooLarge, n)
			}
			e.noMail()
		})
	}
}

// A chunked body is cut when it grows past the limit, while it still
// comes.
func TestTooLargeChunked(t *testing.T) {
	e := start(t, config{maxBytes: limit})
	before := e.statuses()
	c := e.dial()
	c.write(requestHead + "Transfer-Encoding: chunked\r\n\r\n")
	chunk := fmt.Sprintf("%x\r\n%s\r\n", 1000, strings.Repeat("x", 998)+"\r\n")
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		// The body has no end: it is written until the server closes
		// the connection (or, if it never does, up to 16 MiB).
		for n := 0; n < 16<<20; n += 1000 {
			if _, err := c.conn.Write([]byte(chunk)); err != nil {
				return
			}
		}
	}()
	got := c.response()
	e.expect(got, http.StatusRequestEntityTooLarge, "552 Message exceeds maximum size")
	e.countedOnce(before, http.StatusRequestEntityTooLarge)
	c.closed()
	<-sent
	e.noMail()
}

// A message of exactly the limit is judged, by Content-Length and chunked.
func TestAtLimit(t *testing.T) {
	e := start(t, config{maxBytes: limit})
	msg := e.sign(encrypted(t))
	pad := limit - len(msg)
	if pad < 0 {
		t.Fatalf("the message has %d bytes, over the limit", len(msg))
	}
	// Pad with a header the signature does not cover.
	msg = append([]byte(fmt.Sprintf("X-Pad: %s\r\n", strings.Repeat("p", pad-len("X-Pad: \r\n")))), msg...)
	if len(msg) != limit {
		t.Fatalf("padded to %d bytes", len(msg))
	}
	e.expect(e.post(envelope(alice, bob), msg), http.StatusOK, "250 OK")

	chunked := func(body []byte) string {
		var b strings.Builder
		for len(body) > 0 {
			n := min(len(body), 1000)
			fmt.Fprintf(&b, "%x\r\n%s\r\n", n, body[:n])
			body = body[n:]
		}
		return b.String() + "0\r\n\r\n"
	}
	c := e.dial()
	before := e.statuses()
	c.write(requestHead + "Transfer-Encoding: chunked\r\n\r\n" + chunked(msg))
	e.expect(c.response(), http.StatusOK, "250 OK")
	e.countedOnce(before, http.StatusOK)

	before = e.statuses()
	c.write(requestHead + "Transfer-Encoding: chunked\r\n\r\n" + chunked(append([]byte("X: y\r\n"), msg...)))
	e.expect(c.response(), http.StatusRequestEntityTooLarge, "552 Message exceeds maximum size")
	e.countedOnce(before, http.StatusRequestEntityTooLarge)

	msgs := e.sink.Messages()
	if len(msgs) != 2 || !bytes.Equal(msgs[0].Data, msg) || !bytes.Equal(msgs[1].Data, msg) {
		t.Errorf("reinjected %d messages, want the two at the limit", len(msgs))
	}
}
