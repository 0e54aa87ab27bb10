package testnet

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// childEnv makes the test binary a process that reserves hosts.
const childEnv = "TESTNET_TEST_CHILD"

// Hosts held at the same time are distinct, whether the tests that hold
// them run in one process or in several: two listeners on a fixed port
// never meet.
func TestHostsAreExclusive(t *testing.T) {
	if n := os.Getenv(childEnv); n != "" {
		holdHosts(t, n)
		return
	}
	const procs, each = 4, 20
	var (
		mu   sync.Mutex
		held = map[string]string{}
	)
	hold := func(who, host string) {
		mu.Lock()
		defer mu.Unlock()
		if !strings.HasPrefix(host, "127.0.1.") {
			t.Errorf("%s: %s", who, host)
		}
		if other, ok := held[host]; ok {
			t.Errorf("%s handed to %s and to %s", host, other, who)
		}
		held[host] = who
	}
	var wg sync.WaitGroup
	for i := range procs {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHostsAreExclusive$")
		cmd.Env = append(os.Environ(), childEnv+"="+strconv.Itoa(each))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Wait()
		defer stdin.Close() // lets the child go
		wg.Add(1)
		go func() {
			defer wg.Done()
			lines := bufio.NewScanner(out)
			for n := 0; n < each && lines.Scan(); n++ {
				hold(fmt.Sprintf("process %d", i), lines.Text())
			}
		}()
	}
	// This process reserves as many, from parallel goroutines, and holds
	// them until the test ends.
	for range each {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hold("this process", Host(t))
		}()
	}
	wg.Wait()
	if want := (procs + 1) * each; len(held) != want && !t.Failed() {
		t.Errorf("%d hosts held, want %d", len(held), want)
	}
}

// holdHosts reserves n hosts, says which, and holds them until stdin
// closes.
func holdHosts(t *testing.T, n string) {
	count, _ := strconv.Atoi(n)
	for range count {
		host := Host(t)
		// The address is a usable loopback address.
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			fmt.Println("cannot listen:", err)
			continue
		}
		ln.Close()
		fmt.Println(host)
	}
	bufio.NewReader(os.Stdin).ReadString('\n')
}

// A host reserved and given back is not the next one handed out.
func TestHostGivenBackIsNotReusedAtOnce(t *testing.T) {
	var first string
	t.Run("first", func(t *testing.T) { first = Host(t) })
	if second := Host(t); second == first {
		t.Errorf("%s handed out again right after it was given back", first)
	}
}
