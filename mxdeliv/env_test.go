package mxdeliv_test

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"filtermail/activation"
	"filtermail/dkim"
	"filtermail/dns"
	"filtermail/filter"
	"filtermail/gate"
	"filtermail/internal/dkimtest"
	"filtermail/internal/dnstest"
	"filtermail/internal/logtest"
	"filtermail/metrics"
	"filtermail/mxdeliv"
	"filtermail/postfix"
	"filtermail/smtpd/smtpdtest"
)

// The addresses of the tests: a sender at another relay, whose domain
// signs with DKIM, and users of this relay.
const (
	alice = "alice@example.org"
	bob   = "bob@chat.example.org"
	carol = "carol@chat.example.org"
	dave  = "dave@chat.example.org"
)

// watchdog bounds every wait of a test for the server, so that a server
// that hangs fails the test instead of holding it. It is not a threshold:
// a server that works answers at once.
const watchdog = 10 * time.Second

// config changes the listener of a test from what the daemon runs.
type config struct {
	maxBytes int64              // max_message_size; 1 MiB if 0
	conns    int                // connections at once; mxdeliv.MaxConnections if 0
	bodyIdle time.Duration      // the wait for each read of a body; the handler's own if 0
	server   func(*http.Server) // changes the server before it serves
	reinject string             // where reinjection goes; the sink if ""
}

// env is the /mxdeliv listener of an incoming filter, wired as the daemon
// wires it: a real gate with DKIM checks against a DNS server of the
// test's own, reinjecting into an SMTP sink.
type env struct {
	t       *testing.T
	addr    string // host:port of the listener
	url     string
	sink    *smtpdtest.Sink
	dns     *dnstest.Server
	key     *dkimtest.Key // publishes example.org's key
	metrics *metrics.Metrics
	log     *logtest.Buffer
	dir     string // mailboxes_dir
	srv     *http.Server
	client  *http.Client
}

func start(t *testing.T, c config) *env {
	t.Helper()
	if c.maxBytes == 0 {
		c.maxBytes = 1 << 20
	}
	if c.conns == 0 {
		c.conns = mxdeliv.MaxConnections
	}
	e := &env{
		t:       t,
		sink:    smtpdtest.NewSink(t, smtpdtest.Accept),
		dns:     dnstest.Start(t),
		metrics: metrics.New(metrics.Incoming, "test"),
		log:     &logtest.Buffer{},
		dir:     t.TempDir(),
	}
	e.key = dkimtest.NewKey(t, dkimtest.Ed25519, "example.org", "sel")
	e.dns.TXT(e.key.Name(), e.key.TXT())
	r, err := dns.NewResolver(e.dns.Addr())
	if err != nil {
		t.Fatal(err)
	}
	logger := log.New(e.log, "", 0)
	g := gate.New(gate.Options{
		Direction: gate.Incoming,
		Policy:    &filter.Policy{Markers: filter.Mailboxes{Dir: e.dir}},
		Origin:    dkim.New(dkim.Options{Resolver: r}),
		Handover:  &postfix.Reinjector{Addr: cmp.Or(c.reinject, e.sink.Addr())},
		Log:       logger,
		Metrics:   e.metrics,
	})
	h := &mxdeliv.Handler{Gate: g, MaxMessageBytes: c.maxBytes, Log: logger, Metrics: e.metrics}
	if c.bodyIdle != 0 {
		mxdeliv.SetBodyIdleTimeout(h, c.bodyIdle)
	}
	e.srv = mxdeliv.NewServer(h, logger)
	if c.server != nil {
		c.server(e.srv)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	e.url = "http://" + e.addr
	served := make(chan error, 1)
	go func() { served <- e.srv.Serve(activation.LimitListener(ln, c.conns)) }()
	e.client = &http.Client{Transport: &http.Transport{DisableCompression: true}}
	t.Cleanup(func() {
		e.client.CloseIdleConnections()
		closed := make(chan struct{})
		go func() {
			e.srv.Close()
			close(closed)
		}()
		select {
		case <-closed:
		case <-time.After(watchdog):
			t.Error("the server did not close")
			return
		}
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
		}
	})
	return e
}

// in returns e for the subtest t.
func (e *env) in(t *testing.T) *env {
	c := *e
	c.t = t
	return &c
}

// sign returns msg with a DKIM signature of example.org, as the sending
// relay's OpenDKIM signs it.
func (e *env) sign(msg []byte) []byte {
	e.t.Helper()
	return dkimtest.SignOpenDKIM(e.t, e.key, msg, "relaxed/relaxed")
}

// mark puts a marker file (enforceE2EEincoming or DISABLED) into the
// mailbox of addr.
func (e *env) mark(addr, marker string) {
	e.t.Helper()
	dir := filepath.Join(e.dir, addr)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, marker), nil, 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// envelope returns the headers of an envelope as upstream's client writes
// them.
func envelope(from string, to ...string) http.Header {
	return http.Header{"X-MAIL-FROM": {from}, "X-MAIL-TO": to}
}

// response is what the listener answered.
type response struct {
	status int
	body   string
	header http.Header
	close  bool // the server said it closes the connection
}

// do sends a request and checks that it was counted once, with the status
// answered.
func (e *env) do(method, path string, hdr http.Header, body []byte) response {
	e.t.Helper()
	before := e.statuses()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, e.url+path, r)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	text, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("%s %s: reading the answer: %v", method, path, err)
	}
	e.countedOnce(before, resp.StatusCode)
	return response{status: resp.StatusCode, body: string(text), header: resp.Header, close: resp.Close}
}

// post delivers msg with an envelope.
func (e *env) post(hdr http.Header, msg []byte) response {
	e.t.Helper()
	return e.do(http.MethodPost, mxdeliv.Path, hdr, msg)
}

// expect checks an answer: its status and its body, exactly or, for a
// want ending in "…", its start.
func (e *env) expect(got response, status int, want string) {
	e.t.Helper()
	ok := got.body == want
	if prefix, cut := strings.CutSuffix(want, "…"); cut {
		ok = strings.HasPrefix(got.body, prefix)
	}
	if got.status != status || !ok {
		e.t.Errorf("answer %d %q, want %d %q\nlog:\n%s", got.status, got.body, status, want, e.log)
	}
	if ct := got.header.Get("Content-Type"); got.header != nil && ct != "text/plain; charset=utf-8" {
		e.t.Errorf("Content-Type %q", ct)
	}
	if n := got.header.Get("X-Content-Type-Options"); got.header != nil && n != "nosniff" {
		e.t.Errorf("X-Content-Type-Options %q", n)
	}
}

// statuses reads filtermail_mxdeliv_requests_total, by status.
func (e *env) statuses() map[string]float64 {
	e.t.Helper()
	families, err := e.metrics.Registry().Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	counts := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "filtermail_mxdeliv_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "status" {
					counts[l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	if len(counts) != len(metrics.MxdelivStatuses()) {
		e.t.Fatalf("filtermail_mxdeliv_requests_total has the statuses %v, want %v", counts, metrics.MxdelivStatuses())
	}
	return counts
}

// countedOnce checks that, since before, one request was counted: with
// status.
func (e *env) countedOnce(before map[string]float64, status int) {
	e.t.Helper()
	after := e.statuses()
	for s, n := range after {
		want := before[s]
		if s == strconv.Itoa(status) {
			want++
		}
		if n != want {
			e.t.Errorf("filtermail_mxdeliv_requests_total{status=%q} went from %v to %v; answered %d", s, before[s], n, status)
		}
	}
}

// notCounted checks that, since before, no request was counted.
func (e *env) notCounted(before map[string]float64) {
	e.t.Helper()
	e.countedOnce(before, 0)
}

// messagesCounted reads filtermail_messages_total for a verdict and a
// reason.
func (e *env) messagesCounted(verdict, reason string) float64 {
	e.t.Helper()
	families, err := e.metrics.Registry().Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "filtermail_messages_total" {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if (l.GetName() == "verdict" && l.GetValue() != verdict) || (l.GetName() == "reason" && l.GetValue() != reason) {
					continue series
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	e.t.Fatalf("no filtermail_messages_total{verdict=%q,reason=%q}", verdict, reason)
	return 0
}

// noMail checks that nothing reached the sink.
func (e *env) noMail() {
	e.t.Helper()
	if got := e.sink.Messages(); len(got) != 0 {
		e.t.Errorf("%d messages reinjected, want none", len(got))
	}
}

// raw is a connection to the listener that the test writes by hand.
type raw struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

func (e *env) dial() *raw {
	e.t.Helper()
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(watchdog))
	return &raw{t: e.t, conn: c, br: bufio.NewReader(c)}
}

func (r *raw) write(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.conn, s); err != nil {
		r.t.Fatalf("writing to the listener: %v", err)
	}
}

// response reads one response; the watchdog fails the test if none comes.
func (r *raw) response() response {
	r.t.Helper()
	resp, err := http.ReadResponse(r.br, nil)
	if err != nil {
		r.t.Fatalf("no answer: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		r.t.Fatalf("reading the answer: %v", err)
	}
	return response{status: resp.StatusCode, body: string(body), header: resp.Header, close: resp.Close}
}

// closed checks that the server closes the connection: a read ends, with
// EOF or a reset, before the watchdog.
func (r *raw) closed() {
	r.t.Helper()
	_, err := r.br.ReadByte()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		r.t.Fatal("the server kept the connection open")
	}
	if err == nil {
		r.t.Fatal("the server sent more than its answer")
	}
}
