// Package integration tests filtermail as a relay runs it: the built
// binary, real Chromium for the pages, and (in later tests) Postfix and
// OpenPGP tools.
package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binary is the filtermail binary under test, built once by TestMain.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "filtermail-integration")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "filtermail")
	if out, err := exec.Command("go", "build", "-o", binary, "../cmd/filtermail").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building filtermail: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// filtermailProc is a running filtermail.
type filtermailProc struct {
	cmd    *exec.Cmd
	log    *syncBuffer
	exited chan struct{}
}

// stop ends the process with SIGTERM, or SIGKILL after 10 s.
func (p *filtermailProc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// startFiltermail runs `filtermail CONFIG mode` with the given [params]
// lines and waits until its listeners accept. It is stopped with SIGTERM
// when the test ends.
func startFiltermail(t *testing.T, mode string, params ...string) *filtermailProc {
	t.Helper()
	path := filepath.Join(t.TempDir(), "chatmail.ini")
	ini := "[params]\n" + strings.Join(params, "\n") + "\n"
	if err := os.WriteFile(path, []byte(ini), 0o644); err != nil {
		t.Fatal(err)
	}
	log := &syncBuffer{}
	cmd := exec.Command(binary, path, mode)
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	p := &filtermailProc{cmd: cmd, log: log, exited: exited}
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("filtermail log:\n%s", log.String())
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		select {
		case <-exited:
			t.Fatalf("filtermail exited: %s", log.String())
		default:
		}
		if strings.Contains(log.String(), "filter listening on port") {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("filtermail did not start: %s", log.String())
		}
	}
}

// syncBuffer collects a process's output for reading while it runs.
type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
