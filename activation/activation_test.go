package activation

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestParseWithoutSockets(t *testing.T) {
	for _, tt := range []struct{ pid, fds, names string }{
		{"", "", ""},
		{"42", "", ""},
		{"41", "2", "a:b"}, // for another process
	} {
		s, err := parse(tt.pid, tt.fds, tt.names, 42)
		if err != nil || len(s.files) != 0 {
			t.Errorf("%+v: %d sockets, %v; want none", tt, len(s.files), err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("%+v: Close: %v", tt, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tt := range []struct{ fds, names, want string }{
		{"x", "a", `LISTEN_FDS: "x" is not a number`},
		{"-1", "", `LISTEN_FDS: "-1" is not a number`},
		{"2", "", "LISTEN_FDNAMES: 1 names for 2 sockets"},
		{"2", "a", "LISTEN_FDNAMES: 1 names for 2 sockets"},
		{"1", "a:b", "LISTEN_FDNAMES: 2 names for 1 sockets"},
		{"2", "a:a", "LISTEN_FDNAMES: a is passed twice"},
	} {
		_, err := parse("42", tt.fds, tt.names, 42)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("LISTEN_FDS=%s LISTEN_FDNAMES=%s: %v, want %q", tt.fds, tt.names, err, tt.want)
		}
	}
}

// A port that is taken is an error naming the key and the address.
func TestListenInUse(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	s := &Sockets{files: map[string]*os.File{}}
	addr := taken.Addr().String()
	_, err = s.Listen("filtermail_smtp_port", addr)
	if want := "filtermail_smtp_port: " + addr + " already in use"; err == nil || err.Error() != want {
		t.Errorf("error %v, want %q", err, want)
	}
	_, err = s.Listen("filtermail_http_port", "192.0.2.1:80")
	if want := "filtermail_http_port: cannot listen on 192.0.2.1:80: "; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %v, want %q…", err, want)
	}
}

// childEnv marks the test binary run as the process that sockets are
// passed to.
const childEnv = "ACTIVATION_TEST_CHILD"

// The sockets passed the way systemd passes them arrive under their
// names; a name not asked for is reported, and the variables are gone.
func TestPassedSockets(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		child()
		return
	}
	names := []string{"one", "two", "spare"}
	var files []*os.File
	addrs := map[string]string{}
	for _, name := range names {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		f, err := ln.(*net.TCPListener).File()
		if err != nil {
			t.Fatal(err)
		}
		ln.Close()
		defer f.Close()
		files = append(files, f)
		addrs[name] = ln.Addr().String()
	}
	// LISTEN_PID must be the pid of the process that reads it: the shell
	// sets it to its own and becomes the test binary.
	cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ exec "$0" "$@"`, os.Args[0], "-test.run=^TestPassedSockets$")
	cmd.Env = append(os.Environ(), childEnv+"=1", "LISTEN_FDS=3", "LISTEN_FDNAMES="+strings.Join(names, ":"))
	cmd.ExtraFiles = files
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	for _, f := range files {
		f.Close() // the child holds them now
	}
	lines := bufio.NewScanner(out)
	want := []string{"unused: LISTEN_FDNAMES: spare passed but not a listener of this process", "env: ", "ready"}
	for _, w := range want {
		if !lines.Scan() || lines.Text() != w {
			t.Fatalf("child said %q, want %q", lines.Text(), w)
		}
	}
	for _, name := range names[:2] {
		conn, err := net.DialTimeout("tcp", addrs[name], 10*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		got, _ := bufio.NewReader(conn).ReadString('\n')
		conn.Close()
		if got != name+"\n" {
			t.Errorf("socket passed as %s answered %q", name, got)
		}
	}
	// The spare socket was closed by the child: nothing answers there.
	if conn, err := net.Dial("tcp", addrs["spare"]); err == nil {
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, _ := conn.Read(make([]byte, 1)); n > 0 {
			t.Error("the spare socket is served")
		}
		conn.Close()
	}
}

// child takes the sockets, serves "one" and "two" by writing their names
// to one connection each, and reports on stdout.
func child() {
	s, err := FromEnvironment()
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	var lns []net.Listener
	for _, name := range []string{"one", "two"} {
		ln, err := s.Listen(name, "192.0.2.1:1") // never bound: the socket is passed
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		lns = append(lns, ln)
	}
	fmt.Println("unused:", s.Close())
	fmt.Println("env:", os.Getenv("LISTEN_FDS")+os.Getenv("LISTEN_PID")+os.Getenv("LISTEN_FDNAMES"))
	fmt.Println("ready")
	for i, ln := range lns {
		conn, err := ln.Accept()
		if err != nil {
			os.Exit(1)
		}
		fmt.Fprintln(conn, []string{"one", "two"}[i])
		conn.Close()
	}
	os.Exit(0)
}
