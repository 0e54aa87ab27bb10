// Package testnet gives tests loopback hosts of their own: addresses
// 127.0.1.1 to 127.0.1.254, each held by one test at a time across every
// test process on the machine. A test that listens on a fixed port of its
// host (25 for a fake relay, 10025 for Postfix's reinjection) can then not
// meet another test's listener, and a port where the test runs nothing
// stays closed.
package testnet

import (
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
)

// hosts is how many addresses there are to hand out.
const hosts = 254

// next is where the search for a free host starts: each process starts
// elsewhere, and a host given back is not the next one handed out.
var next atomic.Uint32

func init() { next.Store(uint32(os.Getpid())) }

// Host reserves a loopback address for the test and returns it. The
// reservation is a lock on a file in the system's temporary folder; it
// ends when the test ends, and with the process if that dies first.
func Host(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(os.TempDir(), "filtermail-testnet")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o1777) // tests of every user share the addresses
	for range hosts {
		host := fmt.Sprintf("127.0.1.%d", next.Add(1)%hosts+1)
		f, err := os.OpenFile(filepath.Join(dir, host), os.O_RDWR|os.O_CREATE, 0o666)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			continue
		}
		t.Cleanup(func() { f.Close() })
		return host
	}
	t.Fatalf("all %d loopback test hosts are taken", hosts)
	return ""
}
