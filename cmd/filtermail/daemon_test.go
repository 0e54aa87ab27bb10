package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"filtermail/internal/daemontest"
	"filtermail/smtpd/smtpdtest"
)

// binary is the filtermail binary under test, built once by TestMain.
var binary string

func TestMain(m *testing.M) {
	bin, cleanup, err := daemontest.Build()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = bin
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// daemon is a running filtermail with its listeners handed over by the
// test.
type daemon struct {
	*daemontest.Daemon
	t           testing.TB
	port        int // SMTP, or the transport's LMTP
	httpPort    int // metrics, healthz, and outgoing the pages
	mxdelivPort int // incoming: POST /mxdeliv
	mailDir     string
}

// skipDKIMEnv turns the incoming filter's DKIM check off when set to 1.
const skipDKIMEnv = "FILTERMAIL_SKIP_DKIM="

// startDaemon runs filtermail in mode, reinjecting into the sink on
// sinkPort, with the extra [params] lines given.
func startDaemon(t testing.TB, mode string, sinkPort int, extra ...string) *daemon {
	t.Helper()
	return startDaemonWith(t, daemontest.Options{}, mode, sinkPort, extra...)
}

// startDaemonWith is startDaemon with flags or environment of o.
func startDaemonWith(t testing.TB, o daemontest.Options, mode string, sinkPort int, extra ...string) *daemon {
	t.Helper()
	portKey, reinjectKey, httpKey, mxdelivKey := "filtermail_smtp_port", "postfix_reinject_port", "filtermail_http_port", ""
	switch mode {
	case "incoming":
		portKey, reinjectKey = portKey+"_incoming", reinjectKey+"_incoming"
		httpKey, mxdelivKey = "filtermail_metrics_port_incoming", "filtermail_http_port_incoming"
	case "transport":
		portKey, httpKey = "filtermail_lmtp_port_transport", "filtermail_metrics_port_transport"
	}
	d := &daemon{t: t, mailDir: t.TempDir()}
	o.Mode = mode
	o.Params = append([]string{
		"mail_domain = chat.example.org",
		reinjectKey + " = " + strconv.Itoa(sinkPort),
		"mailboxes_dir = " + d.mailDir,
	}, extra...)
	o.Sockets = []string{portKey}
	for _, key := range []string{httpKey, mxdelivKey} {
		if key != "" && !slices.Contains(extra, key+" = 0") {
			o.Sockets = append(o.Sockets, key)
		}
	}
	if mode == "incoming" && !slices.ContainsFunc(o.Env, func(e string) bool { return strings.HasPrefix(e, skipDKIMEnv) }) {
		// Most tests are about the filter; the DKIM tests turn the check
		// on with FILTERMAIL_SKIP_DKIM empty.
		o.Env = append(o.Env, skipDKIMEnv+"1")
	}
	d.Daemon = daemontest.Start(t, binary, o)
	d.port, d.httpPort, d.mxdelivPort = d.Ports[portKey], d.Ports[httpKey], d.Ports[mxdelivKey]
	return d
}

func (d *daemon) waitLog(t testing.TB, line string, n int) { t.Helper(); d.WaitLog(t, line, n) }

func (d *daemon) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(d.port)) }

// mark makes addr a user who refuses incoming cleartext.
func (d *daemon) mark(addr string) {
	dir := filepath.Join(d.mailDir, addr)
	os.MkdirAll(dir, 0o755)
	if err := os.WriteFile(filepath.Join(dir, "enforceE2EEincoming"), nil, 0o644); err != nil {
		d.t.Fatal(err)
	}
}

// disable marks addr's account as disabled.
func (d *daemon) disable(addr string) {
	dir := filepath.Join(d.mailDir, addr)
	os.MkdirAll(dir, 0o755)
	if err := os.WriteFile(filepath.Join(dir, "DISABLED"), nil, 0o644); err != nil {
		d.t.Fatal(err)
	}
}

func dial(t testing.TB, d *daemon) *smtpdtest.Client {
	t.Helper()
	return smtpdtest.Dial(t, d.addr())
}

// wantReply fails the test unless got is want, or starts with want+" ".
func wantReply(t *testing.T, what, got, want string) {
	t.Helper()
	if got != want && !strings.HasPrefix(got, want+" ") {
		t.Errorf("%s: reply %q, want %q", what, got, want)
	}
}

func newSink(t *testing.T, mode smtpdtest.Mode) *smtpdtest.Sink {
	return smtpdtest.NewSink(t, mode)
}
