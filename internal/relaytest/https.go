package relaytest

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"
)

// maxBody bounds the body of a POST /mxdeliv request.
const maxBody = 64 << 20

// Timeouts of the HTTPS relay: for a request's headers (and the TLS
// handshake), and for a connection without requests. Both are far longer
// than a test; the relay closes its connections when the test ends.
const (
	headerTimeout = time.Minute
	idleTimeout   = 5 * time.Minute
)

// Request is one POST /mxdeliv an HTTPS relay received.
type Request struct {
	From    string   // X-Mail-From, as sent
	To      []string // X-Mail-To, one per header line, in order
	Body    []byte
	Resumed bool   // the TLS session was resumed
	Proto   string // "HTTP/1.1" or "HTTP/2.0"
	Conn    int    // which TCP connection (1, 2, … in accept order) carried it
}

// HTTPS is a fake relay's https://host/mxdeliv on host:443. Its methods are
// safe for concurrent use, also while it serves requests.
type HTTPS struct {
	addr   string
	config *tls.Config
	srv    *http.Server
	g      group
	stop   chan struct{} // closed when the relay closes
	once   sync.Once

	mu             sync.Mutex
	status         int
	body           string
	stall          bool
	stallHandshake bool
	requests       []Request
}

// connKey is the context key of the connection number of a request.
type connKey struct{}

// StartHTTPS listens on host:443 with cert, offering HTTP/2 and HTTP/1.1
// through ALPN and TLS session tickets, and answers POST /mxdeliv with 200
// "250 OK" until told otherwise; other paths get 404, other methods 405, a
// body over 64 MiB 413 "552 …". The relay closes when the test ends. If
// the port cannot be bound, the test fails.
func StartHTTPS(t testing.TB, host string, cert tls.Certificate) *HTTPS {
	t.Helper()
	addr := net.JoinHostPort(host, "443")
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("relaytest: HTTPS relay on %s: %v", addr, err)
	}
	h := &HTTPS{
		addr:   addr,
		stop:   make(chan struct{}),
		status: http.StatusOK,
		body:   "250 OK",
		config: &tls.Config{
			Certificates: []tls.Certificate{cert},
			NextProtos:   []string{"h2", "http/1.1"},
		},
	}
	h.srv = &http.Server{
		Handler:           http.HandlerFunc(h.serve),
		TLSConfig:         h.config,
		ReadHeaderTimeout: headerTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          log.New(io.Discard, "", 0),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if tc, ok := c.(*tls.Conn); ok {
				if rc, ok := tc.NetConn().(*conn); ok {
					return context.WithValue(ctx, connKey{}, rc.n)
				}
			}
			return ctx
		},
		ConnState: func(_ net.Conn, state http.ConnState) {
			// net/http reports StateNew from its accept loop, which the
			// group counts, and StateClosed or StateHijacked when the
			// connection's goroutine ends.
			switch state {
			case http.StateNew:
				h.g.track()
			case http.StateClosed, http.StateHijacked:
				h.g.leave()
			}
		},
	}
	h.g.start(func() { h.srv.Serve(&httpsListener{Listener: ln, h: h}) })
	t.Cleanup(h.Close)
	return h
}

// Addr returns the address the relay listens on, host:443.
func (h *HTTPS) Addr() string { return h.addr }

// Reply sets what every later request to POST /mxdeliv gets: status with
// body. It ends a Stall.
func (h *HTTPS) Reply(status int, body string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.status, h.body, h.stall = status, body, false
}

// Stall makes the relay read every later request to POST /mxdeliv and
// never answer it, until Reply is called or the relay closes.
func (h *HTTPS) Stall() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stall = true
}

// StallHandshake makes the relay accept every later TCP connection and
// never speak TLS on it, until the relay closes.
func (h *HTTPS) StallHandshake() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stallHandshake = true
}

// Requests returns the requests to POST /mxdeliv answered or stalled so
// far, in the order they arrived.
func (h *HTTPS) Requests() []Request {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Request, len(h.requests))
	for i, r := range h.requests {
		r.To = slices.Clone(r.To)
		r.Body = slices.Clone(r.Body)
		out[i] = r
	}
	return out
}

// Connections returns how many TCP connections the relay accepted.
func (h *HTTPS) Connections() int { return h.g.connections() }

// Close stops the relay now: its port is closed, its connections too. It
// returns when everything the relay ran has ended. Close may be called
// more than once.
func (h *HTTPS) Close() {
	h.once.Do(func() {
		h.g.close()
		h.srv.Close()
		close(h.stop)
	})
	h.g.wait()
}

// serve answers one request.
func (h *HTTPS) serve(w http.ResponseWriter, r *http.Request) {
	if !h.g.enter() {
		panic(http.ErrAbortHandler)
	}
	defer h.g.leave()
	if r.URL.Path != "/mxdeliv" {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			http.Error(w, "552 5.3.4 Message size exceeds fixed limit", http.StatusRequestEntityTooLarge)
		}
		return
	}
	n, _ := r.Context().Value(connKey{}).(int)
	req := Request{
		From:    r.Header.Get("X-Mail-From"),
		To:      slices.Clone(r.Header.Values("X-Mail-To")),
		Body:    body,
		Resumed: r.TLS != nil && r.TLS.DidResume,
		Proto:   r.Proto,
		Conn:    n,
	}
	h.mu.Lock()
	h.requests = append(h.requests, req)
	status, reply, stall := h.status, h.body, h.stall
	h.mu.Unlock()
	if stall {
		select {
		case <-h.stop:
		case <-r.Context().Done():
		}
		panic(http.ErrAbortHandler) // leave without an answer
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	io.WriteString(w, reply)
}

// httpsListener hands the relay's HTTP server TLS connections, numbered and
// held by the relay's group, and keeps those it is to stall.
type httpsListener struct {
	net.Listener
	h *HTTPS
}

// Accept returns the next connection that is not to be stalled.
func (l *httpsListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		tc, ok := l.h.g.accept(c)
		if !ok {
			continue
		}
		l.h.mu.Lock()
		stall := l.h.stallHandshake
		l.h.mu.Unlock()
		if stall {
			continue // held by the group until the relay closes
		}
		return tls.Server(tc, l.h.config), nil
	}
}
