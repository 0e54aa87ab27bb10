// Package daemontest runs the filtermail binary for tests: built once per
// test process, started on a config of the test's with its listening
// sockets handed over the way systemd passes them (so no port is ever
// guessed), its log kept, and stopped when the test ends, whether it
// passed or not.
package daemontest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"filtermail/internal/logtest"
)

// ServingLine is what filtermail logs once every listener is bound.
const ServingLine = "entering serving loop"

// Build compiles filtermail into a new temporary folder. It is meant for
// TestMain; remove the folder with cleanup when the tests are done. Built
// with the go command's GOFLAGS, so GOFLAGS=-race builds it with the race
// detector.
func Build() (binary string, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "filtermail-bin-")
	if err != nil {
		return "", nil, err
	}
	cleanup = func() { os.RemoveAll(dir) }
	path := filepath.Join(dir, "filtermail")
	if out, err := exec.Command("go", "build", "-o", path, "filtermail/cmd/filtermail").CombinedOutput(); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("building filtermail: %v\n%s", err, out)
	}
	return path, cleanup, nil
}

// Options say how to start a filtermail.
type Options struct {
	Mode   string   // "outgoing", "incoming" or "transport"
	Params []string // the lines of the config's [params] section
	// Sockets are the config keys of the listeners the test binds, on
	// 127.0.0.1 with a port of the kernel's choosing, and hands over.
	// A listener not named here is bound by filtermail as configured.
	Sockets []string
	Flags   []string // command-line flags before CONFIG, such as -v
	Env     []string // added to the environment, last
}

// Daemon is a running filtermail.
type Daemon struct {
	Cmd     *exec.Cmd
	IniPath string
	Ports   map[string]int // the port of each socket handed over, by key
	Exited  chan struct{}  // closed when the process has exited

	log logtest.Buffer
}

// Start runs the filtermail binary with o and waits until it serves. It
// is stopped with SIGTERM when the test ends; its log is printed if the
// test failed.
func Start(t testing.TB, binary string, o Options) *Daemon {
	t.Helper()
	d := &Daemon{Exited: make(chan struct{})}
	d.Cmd, d.IniPath, d.Ports = command(t, binary, o)
	d.Cmd.Stderr = &d.log
	err := d.Cmd.Start()
	closeFiles(d.Cmd)
	if err != nil {
		t.Fatal(err)
	}
	go func() { d.Cmd.Wait(); close(d.Exited) }()
	t.Cleanup(func() {
		d.Stop()
		if strings.Contains(d.Log(), "DATA RACE") {
			t.Error("the race detector found a data race") // with GOFLAGS=-race
		}
		if t.Failed() {
			t.Logf("filtermail log:\n%s", d.Log())
		}
	})
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(d.Log(), ServingLine); time.Sleep(10 * time.Millisecond) {
		select {
		case <-d.Exited:
			t.Fatalf("filtermail exited: %s", d.Log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("filtermail did not start serving: %s", d.Log())
		}
	}
	return d
}

// Run runs the filtermail binary with o to its end, for a start that is
// to fail, and returns what it wrote to stderr and its exit code. It is
// killed if it is still running 20 s later.
func Run(t testing.TB, binary string, o Options) (stderr string, code int) {
	t.Helper()
	cmd, _, _ := command(t, binary, o)
	var log logtest.Buffer
	cmd.Stderr = &log
	err := cmd.Start()
	closeFiles(cmd)
	if err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(20*time.Second, func() { cmd.Process.Kill() })
	defer timer.Stop()
	cmd.Wait()
	return log.String(), cmd.ProcessState.ExitCode()
}

// command is the command that runs filtermail with o: its config written,
// and the sockets o names bound and passed.
func command(t testing.TB, binary string, o Options) (cmd *exec.Cmd, iniPath string, ports map[string]int) {
	t.Helper()
	iniPath = filepath.Join(t.TempDir(), "chatmail.ini")
	ini := "[params]\n" + strings.Join(o.Params, "\n") + "\n"
	if err := os.WriteFile(iniPath, []byte(ini), 0o644); err != nil {
		t.Fatal(err)
	}
	ports = map[string]int{}
	var files []*os.File
	for _, key := range o.Sockets {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		f, err := ln.(*net.TCPListener).File()
		ln.Close()
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
		ports[key] = ln.Addr().(*net.TCPAddr).Port
	}
	args := slices.Concat(o.Flags, []string{iniPath, o.Mode})
	// systemd sets LISTEN_PID to the daemon's pid: the shell sets its own
	// and then becomes filtermail.
	cmd = exec.Command("/bin/sh", append([]string{"-c", `LISTEN_PID=$$ exec "$0" "$@"`, binary}, args...)...)
	cmd.Env = os.Environ()
	if len(files) > 0 {
		cmd.Env = append(cmd.Env, fmt.Sprintf("LISTEN_FDS=%d", len(files)), "LISTEN_FDNAMES="+strings.Join(o.Sockets, ":"))
		cmd.ExtraFiles = files
	}
	cmd.Env = append(cmd.Env, o.Env...)
	return cmd, iniPath, ports
}

// closeFiles closes the test's copies of the sockets passed to cmd, once
// it has started: only the daemon holds them then, so they close with it.
func closeFiles(cmd *exec.Cmd) {
	for _, f := range cmd.ExtraFiles {
		f.Close()
	}
}

// Stop ends the process with SIGTERM, or SIGKILL when it has not exited
// 10 s later, and waits for it to exit. Stopping a stopped daemon does
// nothing.
func (d *Daemon) Stop() {
	d.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.Exited:
	case <-time.After(10 * time.Second):
		d.Cmd.Process.Kill()
		<-d.Exited
	}
}

// Log returns what the daemon wrote to stderr so far.
func (d *Daemon) Log() string { return d.log.String() }

// WaitLog waits until the log holds line n times.
func (d *Daemon) WaitLog(t testing.TB, line string, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); strings.Count(d.Log(), line) < n; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log:\n%s", line, d.Log())
		}
	}
}
