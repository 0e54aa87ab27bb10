package mxdeliv_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"filtermail/internal/testnet"
	"filtermail/mxdeliv"
	"filtermail/smtpd/smtpdtest"
)

// serveTLS serves h over TLS on loopback with a certificate of a test CA,
// and returns its host:port and a client that trusts that CA.
func serveTLS(t *testing.T, h http.Handler) (string, *mxdeliv.Client) {
	t.Helper()
	ts := httptest.NewTLSServer(h)
	t.Cleanup(ts.Close)
	return ts.Listener.Addr().String(), &mxdeliv.Client{HTTP: ts.Client()}
}

func deliver(c *mxdeliv.Client, host string, msg []byte) mxdeliv.Result {
	return c.Deliver(context.Background(), host, alice, []string{bob}, func() io.Reader { return bytes.NewReader(msg) }, int64(len(msg)))
}

// The client against the listener, over TLS: each answer of the contract
// comes out as the outcome the transport acts on.
func TestClientRoundTrip(t *testing.T) {
	e := start(t, config{maxBytes: 64 << 10})
	host, c := serveTLS(t, e.srv.Handler)
	signed := e.sign(encrypted(t))

	if got := deliver(c, host, signed); got.Outcome != mxdeliv.Delivered || got.Reply != "250 OK" || got.Status != 200 {
		t.Errorf("signed, encrypted: %+v", got)
	}
	if got := e.sink.Messages(); len(got) != 1 || got[0].From != alice || !bytes.Equal(got[0].Data, signed) {
		t.Errorf("the sink got %+v", got)
	}
	if got := deliver(c, host, encrypted(t)); got.Outcome != mxdeliv.Refused || got.Reply != "554 5.7.1 No DKIM signature found" {
		t.Errorf("unsigned: %+v", got)
	}
	large := e.sign(append(encrypted(t), bytes.Repeat([]byte("x\r\n"), 40<<10)...))
	if got := deliver(c, host, large); got.Outcome != mxdeliv.Refused || got.Status != 413 || !strings.HasPrefix(got.Reply, "552 ") {
		t.Errorf("too large: %+v", got)
	}
	e.sink.SetMode(smtpdtest.TempFail)
	if got := deliver(c, host, signed); got.Outcome != mxdeliv.Deferred || !strings.HasPrefix(got.Reply, "451 ") {
		t.Errorf("Postfix busy: %+v", got)
	}
}

// Whatever is not an answer of the contract leaves the way to SMTP open.
func TestClientUnavailable(t *testing.T) {
	msg := []byte("From: <" + alice + ">\r\n\r\nhi\r\n")
	host, c := serveTLS(t, http.NotFoundHandler())
	if got := deliver(c, host, msg); got.Outcome != mxdeliv.Unavailable || got.Status != 404 {
		t.Errorf("no /mxdeliv: %+v", got)
	}
	// A certificate of a CA the client does not trust.
	untrusted := &mxdeliv.Client{HTTP: &http.Client{}}
	if got := deliver(untrusted, host, msg); got.Outcome != mxdeliv.Unavailable || got.Status != 0 ||
		!strings.Contains(got.Reply, "certificate") {
		t.Errorf("untrusted certificate: %+v", got)
	}
	// Nothing listens on a loopback host of the test's own.
	closed := net.JoinHostPort(testnet.Host(t), "443")
	if got := deliver(c, closed, msg); got.Outcome != mxdeliv.Unavailable || got.Status != 0 {
		t.Errorf("connection refused: %+v", got)
	}
	// The relay's reply goes out on one line, whatever it sent.
	host, c = serveTLS(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(400)
		w.Write([]byte("550-5.1.1 no such user\r\n550 5.1.1 here\r\n"))
	}))
	if got := deliver(c, host, msg); got.Outcome != mxdeliv.Refused || got.Reply != "550 5.1.1 no such user 5.1.1 here" {
		t.Errorf("multi-line reply: %+v", got)
	}
}
