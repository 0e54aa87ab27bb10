package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"filtermail/smtpd/smtpdtest"
)

// binary is the filtermail binary under test, built once by TestMain.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "filtermail-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "filtermail")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building filtermail: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// daemon is a running filtermail process.
type daemon struct {
	t        testing.TB
	port     int
	httpPort int
	iniPath  string
	cmd      *exec.Cmd
	mu       sync.Mutex
	stderr   bytes.Buffer
	exited   chan struct{}
	mailDir  string
}

func (d *daemon) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stderr.Write(p)
}

// Log returns what the daemon wrote to stderr so far.
func (d *daemon) Log() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stderr.String()
}

// startDaemon runs filtermail in mode with a config whose ports are free,
// reinjecting into sink, plus the extra [params] lines given.
func startDaemon(t testing.TB, mode string, sinkPort int, extra ...string) *daemon {
	t.Helper()
	return startDaemonWith(t, "", mode, sinkPort, extra...)
}

// startDaemonWith is startDaemon with a twist: how is "flag" for -v,
// "env" for FILTERMAIL_LOG=debug, or "notify:PATH" for systemd's
// NOTIFY_SOCKET.
func startDaemonWith(t testing.TB, how, mode string, sinkPort int, extra ...string) *daemon {
	t.Helper()
	d := &daemon{t: t, port: smtpdtest.FreePort(t), httpPort: smtpdtest.FreePort(t), exited: make(chan struct{}), mailDir: t.TempDir()}
	portKey, reinjectKey, httpKey := "filtermail_smtp_port", "postfix_reinject_port", "filtermail_http_port"
	if mode == "incoming" {
		portKey, reinjectKey, httpKey = portKey+"_incoming", reinjectKey+"_incoming", httpKey+"_incoming"
	}
	ini := fmt.Sprintf("[params]\nmail_domain = chat.example.org\n%s = %d\n%s = %d\n%s = %d\nmailboxes_dir = %s\n%s\n",
		portKey, d.port, reinjectKey, sinkPort, httpKey, d.httpPort, d.mailDir, strings.Join(extra, "\n"))
	d.iniPath = filepath.Join(t.TempDir(), "chatmail.ini")
	if err := os.WriteFile(d.iniPath, []byte(ini), 0o644); err != nil {
		t.Fatal(err)
	}
	d.cmd = exec.Command(binary, d.iniPath, mode)
	switch {
	case how == "flag":
		d.cmd.Args = []string{binary, "-v", d.iniPath, mode}
	case how == "env":
		d.cmd.Env = append(os.Environ(), "FILTERMAIL_LOG=debug")
	case strings.HasPrefix(how, "notify:"):
		d.cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+strings.TrimPrefix(how, "notify:"))
	}
	d.cmd.Stderr = d
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() {
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(10 * time.Second):
			d.cmd.Process.Kill()
		}
		if strings.Contains(d.Log(), "DATA RACE") {
			t.Error("the race detector found a data race") // with GOFLAGS=-race
		}
		if t.Failed() {
			t.Logf("filtermail log:\n%s", d.Log())
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.Dial("tcp", d.addr())
		if err == nil {
			c.Close()
			return d
		}
		select {
		case <-d.exited:
			t.Fatalf("filtermail exited: %s", d.Log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("filtermail did not listen: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitLog waits until the log holds line n times.
func (d *daemon) waitLog(t testing.TB, line string, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); strings.Count(d.Log(), line) < n; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log:\n%s", line, d.Log())
		}
	}
}

func (d *daemon) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(d.port)) }

// mark makes addr a user who refuses incoming cleartext.
func (d *daemon) mark(addr string) {
	dir := filepath.Join(d.mailDir, addr)
	os.MkdirAll(dir, 0o755)
	if err := os.WriteFile(filepath.Join(dir, "enforceE2EEincoming"), nil, 0o644); err != nil {
		d.t.Fatal(err)
	}
}

func dial(t testing.TB, d *daemon) *smtpdtest.Client {
	t.Helper()
	return smtpdtest.Dial(t, d.port)
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
