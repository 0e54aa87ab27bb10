package tlspolicy_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"filtermail/dns"
	"filtermail/internal/clocktest"
	"filtermail/internal/dnstest"
	"filtermail/internal/logtest"
	"filtermail/internal/testnet"
	"filtermail/tlspolicy"
)

// env is the world of one test: a DNS server, an HTTPS server on port 443
// of a loopback host of the test's own that serves mta-sts.<domain> for
// the domains the test sets, with certificates of a test CA, and a
// Checker whose HTTP client resolves through that DNS server and trusts
// that CA.
type env struct {
	dns     *dnstest.Server
	ca      *testCA
	host    string
	srv     *http.Server
	client  *http.Client
	clock   *clocktest.Clock
	log     *logtest.Buffer
	checker *tlspolicy.Checker

	mu       sync.Mutex
	handlers map[string]http.HandlerFunc // by host name
	fetches  map[string]int
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{
		dns:      dnstest.Start(t),
		ca:       newCA(t),
		host:     testnet.Host(t),
		clock:    clocktest.New(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)),
		log:      &logtest.Buffer{},
		handlers: map[string]http.HandlerFunc{},
		fetches:  map[string]int{},
	}
	resolver, err := dns.NewResolver(e.dns.Addr())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(e.host, "443"))
	if err != nil {
		t.Fatal(err)
	}
	e.srv = &http.Server{
		Handler: http.HandlerFunc(e.serve),
		TLSConfig: &tls.Config{GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			c, err := e.ca.issue(hello.ServerName)
			return &c, err
		}},
		ErrorLog:          log.New(io.Discard, "", 0),
		ReadHeaderTimeout: 5 * time.Second,
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.srv.ServeTLS(ln, "", "")
	}()
	t.Cleanup(func() {
		e.srv.Close()
		<-done
	})
	e.client = &http.Client{
		Transport: &http.Transport{
			DialContext:     dialer(resolver),
			TLSClientConfig: &tls.Config{RootCAs: e.ca.pool()},
		},
		Timeout: 10 * time.Second,
	}
	t.Cleanup(e.client.CloseIdleConnections)
	e.checker = tlspolicy.New(tlspolicy.Options{Resolver: resolver, HTTP: e.client, Log: log.New(e.log, "", 0)})
	tlspolicy.SetNow(e.checker, e.clock.Now)
	return e
}

// dialer connects to host names through r, as the caller's client does.
func dialer(r *dns.Resolver) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		addrs, err := r.LookupAddrs(ctx, host)
		if err != nil {
			return nil, err
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", net.JoinHostPort(addrs.IPs[0].String(), port))
	}
}

// serve answers a request for a policy with the handler of its host.
func (e *env) serve(w http.ResponseWriter, r *http.Request) {
	host := strings.ToLower(r.Host)
	e.mu.Lock()
	h := e.handlers[host]
	e.fetches[host]++
	e.mu.Unlock()
	if h == nil || r.URL.Path != "/.well-known/mta-sts.txt" {
		http.NotFound(w, r)
		return
	}
	h(w, r)
}

// record sets the MTA-STS TXT record of domain.
func (e *env) record(domain, id string) {
	e.dns.TXT("_mta-sts."+domain, "v=STSv1; id="+id)
}

// handle makes h answer for the policy of domain.
func (e *env) handle(domain string, h http.HandlerFunc) {
	e.dns.A("mta-sts."+domain, e.host)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.handlers["mta-sts."+domain] = h
}

// policy serves text as the policy of domain.
func (e *env) policy(domain, text string) {
	e.handle(domain, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, text)
	})
}

// publish sets the record of domain with id and serves its policy.
func (e *env) publish(domain, id, text string) {
	e.record(domain, id)
	e.policy(domain, text)
}

// fetched returns how many requests the policy server had for domain.
func (e *env) fetched(domain string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.fetches["mta-sts."+domain]
}

func (e *env) sts(t *testing.T, domain string) tlspolicy.STS {
	t.Helper()
	sts, err := e.checker.STS(context.Background(), domain)
	if err != nil {
		t.Fatalf("STS(%s): %v", domain, err)
	}
	return sts
}

func isTemporary(err error) bool { return errors.Is(err, tlspolicy.ErrTemporary) }

const enforce = "version: STSv1\r\nmode: enforce\r\nmx: mx1.relay.example\r\nmx: *.mx.relay.example\r\nmax_age: 604800\r\n"

func resolverOf(t *testing.T, e *env) *dns.Resolver {
	t.Helper()
	r, err := dns.NewResolver(e.dns.Addr())
	if err != nil {
		t.Fatal(err)
	}
	return r
}
