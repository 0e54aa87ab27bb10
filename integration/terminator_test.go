package integration

import (
	"context"
	"crypto/tls"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"filtermail/internal/logtest"
)

// terminator stands in for nginx on a relay's port 443: it terminates TLS
// with the relay's certificate and passes /mxdeliv on to the incoming
// filter, as the relay's `location /mxdeliv { proxy_pass
// http://127.0.0.1:10082; }` does. Every other path is 404.
type terminator struct {
	Addr string // host:443

	srv  *http.Server
	done chan struct{}
	once sync.Once
	log  logtest.Buffer

	mu       sync.Mutex
	requests []proxied
}

// proxied is a request the terminator answered.
type proxied struct {
	Method, Path string
	Status       int
}

// startTerminator listens on host:443 with cert and passes /mxdeliv on to
// upstream (host:port). It is closed when the test ends.
func startTerminator(t testing.TB, host string, cert tls.Certificate, upstream string) *terminator {
	t.Helper()
	tm := &terminator{Addr: net.JoinHostPort(host, "443"), done: make(chan struct{})}
	ln, err := net.Listen("tcp", tm.Addr)
	if err != nil {
		t.Fatalf("TLS terminator: %v", err)
	}
	target := &url.URL{Scheme: "http", Host: upstream}
	errorLog := log.New(&tm.log, "terminator: ", 0)
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.SetXForwarded()
		},
		ErrorLog: errorLog,
	}
	tm.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
			if strings.HasPrefix(r.URL.Path, "/mxdeliv") {
				proxy.ServeHTTP(sw, r)
			} else {
				http.NotFound(sw, r)
			}
			tm.mu.Lock()
			tm.requests = append(tm.requests, proxied{r.Method, r.URL.Path, sw.status})
			tm.mu.Unlock()
		}),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}},
		ReadHeaderTimeout: time.Minute,
		ErrorLog:          errorLog,
	}
	go func() {
		defer close(tm.done)
		tm.srv.ServeTLS(ln, "", "")
	}()
	t.Cleanup(func() {
		tm.Close()
		if t.Failed() {
			t.Logf("TLS terminator on %s log:\n%s", tm.Addr, tm.log.String())
		}
	})
	return tm
}

// Close closes the port and every connection, after the requests in
// flight were answered (at most 5 s). Closing a closed terminator does
// nothing.
func (tm *terminator) Close() {
	tm.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if tm.srv.Shutdown(ctx) != nil {
			tm.srv.Close()
		}
		<-tm.done
	})
}

// Requests returns the requests answered so far, in order.
func (tm *terminator) Requests() []proxied {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return append([]proxied(nil), tm.requests...)
}

// waitRequests waits until n requests were answered, at most 20 s, and
// returns those answered by then. A request is noted once its response
// is written: its client may have read it a moment before.
func (tm *terminator) waitRequests(n int) []proxied {
	for deadline := time.Now().Add(20 * time.Second); len(tm.Requests()) < n && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	return tm.Requests()
}

// statusWriter notes the status of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
