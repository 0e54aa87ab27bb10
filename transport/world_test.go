package transport_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"log"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"filtermail/dns"
	"filtermail/internal/dnstest"
	"filtermail/internal/logtest"
	"filtermail/internal/relaytest"
	"filtermail/internal/testnet"
	"filtermail/metrics"
	"filtermail/transport"
)

// ca is the test CA. The transport trusts it as it trusts any root: it
// is in SSL_CERT_FILE before anything reads the system's roots.
var ca *relaytest.CA

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "transport-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ca, err = relaytest.NewCA(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("SSL_CERT_FILE", ca.CertFile)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// world is a transport under test with its own DNS server, and the
// remote relays a test starts.
type world struct {
	t       testing.TB
	dns     *dnstest.Server
	tr      *transport.Transport
	lmtp    string // the transport's LMTP address
	log     *logtest.Buffer
	metrics *metrics.Metrics
}

func newWorld(t *testing.T) *world {
	return newWorldWith(t, transport.Options{})
}

// newWorldWith starts a transport with the bounds of o.
func newWorldWith(t testing.TB, o transport.Options) *world {
	t.Helper()
	w := &world{t: t, dns: dnstest.Start(t), log: &logtest.Buffer{}}
	r, err := dns.NewResolver(w.dns.Addr())
	if err != nil {
		t.Fatal(err)
	}
	w.metrics = metrics.New(metrics.Transport, "test")
	o.Domain = "relay.example"
	o.Resolver = r
	o.Log = log.New(w.log, "", 0)
	o.Debug = true
	o.Metrics = w.metrics
	w.tr = transport.New(o)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w.lmtp = ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- w.tr.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := w.tr.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return w
}

// relay is a remote relay for domain: its MX mx.<domain> on a loopback
// host of its own, with HTTPS and SMTP that hold certificates for it.
type relay struct {
	host  string
	mx    string
	https *relaytest.HTTPS
	smtp  *relaytest.SMTP
}

// relayOptions say how a relay is started.
type relayOptions struct {
	noHTTPS, noSMTP bool
	noSTARTTLS      bool
	cert            *tls.Certificate // instead of one from the CA
}

func (w *world) relay(domain string) *relay {
	return w.relayWith(domain, relayOptions{})
}

func (w *world) relayWith(domain string, o relayOptions) *relay {
	w.t.Helper()
	r := &relay{host: testnet.Host(w.t), mx: "mx." + domain}
	w.dns.MX(domain, 10, r.mx)
	w.dns.A(r.mx, r.host)
	cert := o.cert
	if cert == nil {
		c, err := ca.Certificate(r.mx)
		if err != nil {
			w.t.Fatal(err)
		}
		cert = &c
	}
	if !o.noHTTPS {
		r.https = relaytest.StartHTTPS(w.t, r.host, *cert)
	}
	if !o.noSMTP {
		so := relaytest.SMTPOptions{Cert: cert}
		if o.noSTARTTLS {
			so.Cert = nil
		}
		r.smtp = relaytest.StartSMTP(w.t, r.host, so)
	}
	return r
}

// send hands a message to the transport over LMTP and returns each
// recipient's reply, "code enhanced text", or the reply to MAIL or RCPT
// where the transaction did not get that far.
func (w *world) send(from string, to []string, msg string) map[string]string {
	w.t.Helper()
	replies, err := w.trySend(from, to, msg)
	if err != nil {
		w.t.Fatal(err)
	}
	return replies
}

// sendAsync sends as send does, in the background; a failure to send is
// the reply of every recipient.
func (w *world) sendAsync(from string, to []string, msg string) <-chan map[string]string {
	got := make(chan map[string]string, 1)
	go func() {
		replies, err := w.trySend(from, to, msg)
		if err != nil {
			replies = map[string]string{}
			for _, rcpt := range to {
				replies[rcpt] = "error: " + err.Error()
			}
		}
		got <- replies
	}()
	return got
}

func (w *world) trySend(from string, to []string, msg string) (map[string]string, error) {
	conn, err := net.Dial("tcp", w.lmtp)
	if err != nil {
		return nil, err
	}
	c := smtp.NewClientLMTP(conn)
	defer c.Close()
	if err := c.Hello("postfix.relay.example"); err != nil {
		return nil, err
	}
	replies := map[string]string{}
	if err := c.Mail(from, &smtp.MailOptions{Size: int64(len(msg))}); err != nil {
		for _, rcpt := range to {
			replies[rcpt] = "MAIL " + format(err)
		}
		return replies, nil
	}
	var accepted []string
	for _, rcpt := range to {
		if err := c.Rcpt(rcpt, nil); err != nil {
			replies[rcpt] = "RCPT " + format(err)
			continue
		}
		accepted = append(accepted, rcpt)
	}
	if len(accepted) == 0 {
		return replies, nil
	}
	wc, err := c.Data()
	if err != nil {
		return nil, err
	}
	if _, err := wc.Write([]byte(msg)); err != nil {
		return nil, err
	}
	ok, err := wc.CloseWithLMTPResponse()
	// go-smtp's LMTP server names the recipient in front of each text.
	for rcpt, r := range ok {
		replies[rcpt] = strings.Replace("250 "+r.StatusText, "<"+rcpt+"> ", "", 1)
	}
	if lerr, isLMTP := err.(smtp.LMTPDataError); isLMTP {
		for rcpt, e := range lerr {
			replies[rcpt] = strings.Replace(format(e), "<"+rcpt+"> ", "", 1)
		}
	} else if err != nil {
		return nil, err
	}
	c.Quit()
	return replies, nil
}

func format(err error) string {
	if e, ok := err.(*smtp.SMTPError); ok {
		return fmt.Sprintf("%d %d.%d.%d %s", e.Code, e.EnhancedCode[0], e.EnhancedCode[1], e.EnhancedCode[2], e.Message)
	}
	return err.Error()
}

// message is an encrypted-looking test message from alice to bob; the
// transport never judges, so its content does not matter.
func message(from, to string) string {
	return "From: <" + from + ">\r\nTo: <" + to + ">\r\nSubject: [...]\r\nMessage-ID: <1@relay.example>\r\n\r\n" +
		"line one\r\n.line with a dot\r\n8bit \xc3\xa4\r\n"
}

// parallel runs f n times at once and waits for all.
func parallel(n int, f func(i int)) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { f(i) })
	}
	wg.Wait()
}

// has reports whether s holds every one of parts.
func has(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
