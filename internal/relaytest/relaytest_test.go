package relaytest

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"filtermail/internal/testnet"
)

// ca is the authority of the tests, trusted through SSL_CERT_FILE.
var ca *CA

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "relaytest")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ca, err = NewCA(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("SSL_CERT_FILE", ca.CertFile)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// certificate issues a certificate of ca for names or fails the test.
func certificate(t *testing.T, names ...string) tls.Certificate {
	t.Helper()
	cert, err := ca.Certificate(names...)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// fatalRecorder is a test that records Fatalf and stops there.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Helper() {}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// fatalOf runs start with a fatalRecorder and returns what it failed with.
func fatalOf(t *testing.T, start func(testing.TB)) string {
	f := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		start(f)
	}()
	<-done
	return f.msg
}

func TestPortTaken(t *testing.T) {
	host := testnet.Host(t)
	cert := certificate(t, host)
	StartHTTPS(t, host, cert)
	StartSMTP(t, host, SMTPOptions{})
	msg := fatalOf(t, func(tb testing.TB) { StartHTTPS(tb, host, cert) })
	if !strings.Contains(msg, host+":443") || !strings.Contains(msg, "address already in use") {
		t.Errorf("second HTTPS relay on %s: failed with %q", host, msg)
	}
	msg = fatalOf(t, func(tb testing.TB) { StartSMTP(tb, host, SMTPOptions{}) })
	if !strings.Contains(msg, host+":25") || !strings.Contains(msg, "address already in use") {
		t.Errorf("second SMTP relay on %s: failed with %q", host, msg)
	}
}

// refused tells whether a connection to addr is refused.
func refused(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s takes connections", addr)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%s: %v, want connection refused", addr, err)
	}
	return nil
}

// eventually waits up to a few seconds for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("still not %s", what)
		}
	}
}

func TestClose(t *testing.T) {
	host := testnet.Host(t)
	h := StartHTTPS(t, host, certificate(t, host))
	s := StartSMTP(t, host, SMTPOptions{})
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	greeting, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(greeting, "220 ") {
		t.Fatalf("greeting %q, %v", greeting, err)
	}
	h.Close()
	s.Close()
	for _, addr := range []string{h.Addr(), s.Addr()} {
		if err := refused(addr); err != nil {
			t.Error(err)
		}
	}
	// The open connection was closed too.
	if _, err := io.ReadAll(c); err != nil {
		t.Errorf("connection open when the relay closed: %v, want EOF", err)
	}
	h.Close()
	s.Close()
}

func TestNoHost(t *testing.T) {
	if err := refused(net.JoinHostPort(testnet.Host(t), "443")); err != nil {
		t.Error(err)
	}
}

// running returns the stacks of goroutines that run a relay, or "".
func running() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "relaytest.(*") || strings.Contains(g, "net/http.(*conn).serve") ||
			strings.Contains(g, "net/http.(*http2serverConn)") {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}

func TestCloseEndsGoroutines(t *testing.T) {
	host := testnet.Host(t)
	cert := certificate(t, host)
	h := StartHTTPS(t, host, cert)
	s := StartSMTP(t, host, SMTPOptions{Cert: &cert})
	h.Stall()
	s.StallData()
	for _, h2 := range []bool{false, true} {
		go post(httpsClient(h2, 0), "https://"+host+"/mxdeliv", "", nil, "")
	}
	r := dialRaw(t, s)
	r.send("EHLO client.example\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@relay.example>\r\nDATA\r\nx\r\n.\r\n")
	dialRaw(t, s) // idle
	eventually(t, "two stalled requests", func() bool { return len(h.Requests()) == 2 })
	if running() == "" {
		t.Fatal("no relay goroutines seen before Close")
	}
	h.Close()
	s.Close()
	deadline := time.Now().Add(5 * time.Second)
	for running() != "" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if g := running(); g != "" {
		t.Errorf("goroutines still running after Close:\n%s", g)
	}
}
