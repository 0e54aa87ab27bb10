package integration

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"debug/buildinfo"
	"debug/elf"
	byteorder "encoding/binary"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"filtermail/internal/daemontest"
	"filtermail/internal/logtest"
)

// The release as an operator gets it: scripts/release.sh run in a fresh
// clone of HEAD, and the binary it builds run as the relay runs it.

// releaseFiles are the files scripts/release.sh writes, and nothing else.
var releaseFiles = []string{"SHA256SUMS", "filtermail-aarch64", "filtermail-x86_64"}

// releaseMachines are the ELF machines of the release binaries.
var releaseMachines = map[string]elf.Machine{
	"filtermail-x86_64":  elf.EM_X86_64,
	"filtermail-aarch64": elf.EM_AARCH64,
}

// releaseBuild is scripts/release.sh run in a clone of HEAD.
type releaseBuild struct {
	clone  string        // the clone's folder
	out    string        // OUTDIR, outside the clone
	commit string        // HEAD of the clone
	took   time.Duration // how long release.sh ran
}

// buildRelease clones the repository's HEAD into dir/src, with nothing
// shared (--no-local: no hard links, no alternates), and runs
// scripts/release.sh dir/out there; with ownCache, the go command builds
// with a build cache of its own, empty, in dir.
func buildRelease(dir string, ownCache bool) (*releaseBuild, error) {
	top, err := releaseGit("", "rev-parse", "--show-toplevel")
	if err != nil {
		return nil, err
	}
	head, err := releaseGit(top, "rev-parse", "HEAD")
	if err != nil {
		return nil, err
	}
	b := &releaseBuild{clone: filepath.Join(dir, "src"), out: filepath.Join(dir, "out")}
	if _, err := releaseGit("", "clone", "-q", "--no-local", top, b.clone); err != nil {
		return nil, err
	}
	if b.commit, err = releaseGit(b.clone, "rev-parse", "HEAD"); err != nil {
		return nil, err
	}
	if b.commit != head {
		return nil, fmt.Errorf("the clone of %s is at %s, not at its HEAD %s", top, b.commit, head)
	}
	start := time.Now()
	cmd := exec.Command("./scripts/release.sh", b.out)
	cmd.Dir = b.clone
	if ownCache {
		cmd.Env = append(os.Environ(), "GOCACHE="+filepath.Join(dir, "gocache"))
	}
	out, err := cmd.CombinedOutput()
	b.took = time.Since(start)
	if err != nil {
		return nil, fmt.Errorf("scripts/release.sh: %v\n%s", err, out)
	}
	return b, nil
}

// releaseGit runs git in dir (the test's folder if empty) and returns its
// output, trimmed.
func releaseGit(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", append([]string{"-c", "advice.detachedHead=false"}, args...)...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return strings.TrimSpace(string(out)), nil
}

// sharedRelease is the release build both tests use, made by the first
// of them that runs. It lives in the folder of the binary under test,
// which TestMain removes when the tests are done.
var sharedRelease = sync.OnceValues(func() (*releaseBuild, error) {
	dir := filepath.Join(filepath.Dir(binary), "release")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	return buildRelease(dir, false)
})

// hostReleaseBinary is the name of the release binary that runs here.
func hostReleaseBinary(t *testing.T) string {
	t.Helper()
	switch runtime.GOARCH {
	case "amd64":
		return "filtermail-x86_64"
	case "arm64":
		return "filtermail-aarch64"
	}
	t.Fatalf("no release binary runs on %s", runtime.GOARCH)
	return ""
}

// sumLine is a line of sha256sum's output for a file read in text mode.
var sumLine = regexp.MustCompile(`^([0-9a-f]{64})  (\S+)$`)

// TestRelease builds the release twice, from two clones of HEAD, and
// checks what an operator downloads: both binaries static, stamped,
// byte-identical between the builds, and listed in SHA256SUMS with their
// sums. The second build has a build cache of its own, empty: it compiles
// everything again, elsewhere, and must still give the same bytes.
func TestRelease(t *testing.T) {
	a, err := sharedRelease()
	if err != nil {
		t.Fatal(err)
	}
	b, err := buildRelease(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("commit %s; release.sh took %v in %s, %v in %s",
		a.commit, a.took.Round(time.Millisecond), a.clone, b.took.Round(time.Millisecond), b.clone)

	for _, build := range []*releaseBuild{a, b} {
		entries, err := os.ReadDir(build.out)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if !slices.Equal(names, releaseFiles) {
			t.Fatalf("%s holds %q, want %q", build.out, names, releaseFiles)
		}
	}

	// Reproducible: the same bytes from either clone.
	files := map[string][]byte{}
	for _, name := range releaseFiles {
		data, err := os.ReadFile(filepath.Join(a.out, name))
		if err != nil {
			t.Fatal(err)
		}
		other, err := os.ReadFile(filepath.Join(b.out, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data, other) {
			t.Errorf("%s differs between the builds in %s and %s", name, a.clone, b.clone)
		}
		files[name] = data
	}

	// SHA256SUMS as sha256sum writes it, with the binaries' real sums.
	want := map[string]string{}
	for name := range releaseMachines {
		want[name] = fmt.Sprintf("%x", sha256.Sum256(files[name]))
	}
	listed := map[string]string{}
	for _, line := range strings.SplitAfter(string(files["SHA256SUMS"]), "\n") {
		if line == "" {
			continue
		}
		m := sumLine.FindStringSubmatch(strings.TrimSuffix(line, "\n"))
		if m == nil || !strings.HasSuffix(line, "\n") {
			t.Errorf("SHA256SUMS: %q is not a line of sha256sum", line)
			continue
		}
		if _, dup := listed[m[2]]; dup {
			t.Errorf("SHA256SUMS lists %s twice", m[2])
		}
		listed[m[2]] = m[1]
	}
	if !maps.Equal(listed, want) {
		t.Errorf("SHA256SUMS:\n%s\nwant the sums %v", files["SHA256SUMS"], want)
	}

	// Static, for the right machine, built as the script says.
	for name, machine := range releaseMachines {
		path := filepath.Join(a.out, name)
		info, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm()&0o111 != 0o111 {
			t.Errorf("%s: mode %v, want executable by all", name, info.Mode())
		}
		f, err := elf.Open(path)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if f.Class != elf.ELFCLASS64 || f.Machine != machine {
			t.Errorf("%s: %v %v, want ELFCLASS64 %v", name, f.Class, f.Machine, machine)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
				t.Errorf("%s has a %v program header: not static", name, p.Type)
			}
		}
		if f.Section(".dynamic") != nil || f.Section(".interp") != nil {
			t.Errorf("%s has a .dynamic or .interp section: not static", name)
		}
		elfType := f.Type
		f.Close()
		bi, err := buildinfo.ReadFile(path)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		settings := map[string]string{}
		for _, s := range bi.Settings {
			settings[s.Key] = s.Value
		}
		for key, value := range map[string]string{"CGO_ENABLED": "0", "-trimpath": "true", "GOOS": "linux"} {
			if settings[key] != value {
				t.Errorf("%s: built with %s=%q, want %q", name, key, settings[key], value)
			}
		}
		if _, ok := settings["vcs.revision"]; ok {
			t.Errorf("%s carries the go command's VCS stamp", name)
		}
		if bytes.Contains(files[name], []byte(a.clone)) {
			t.Errorf("%s holds the path of the folder it was built in, %s", name, a.clone)
		}
		t.Logf("%s: %d bytes (%.1f MiB), %v %v, %s", name, info.Size(), float64(info.Size())/(1<<20), elfType, machine, bi.GoVersion)
	}

	// Stamped with VERSION and the clone's commit, not -dirty.
	version, err := os.ReadFile(filepath.Join(a.clone, "VERSION"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(filepath.Join(a.out, hostReleaseBinary(t)), "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("--version: %v\n%s", err, out)
	}
	wantVersion := fmt.Sprintf("filtermail %s (commit %s)\n", strings.TrimRight(string(version), "\n"), a.commit)
	if string(out) != wantVersion {
		t.Errorf("--version printed %q, want %q", out, wantVersion)
	}
	t.Logf("--version: %s", strings.TrimSpace(string(out)))
}

// relayPorts are the ports each mode listens on with the relay's
// defaults, on 127.0.0.1, and what answers there.
var relayPorts = map[string][]struct {
	port  int
	check func(t *testing.T, c net.Conn) string
}{
	"outgoing": {
		{10080, smtpGreets},
		{10084, httpAnswers("/", http.StatusOK)},
	},
	"incoming": {
		{10081, smtpGreets},
		{10082, httpAnswers("/mxdeliv", http.StatusMethodNotAllowed)},
		{10085, httpAnswers("/metrics", http.StatusOK)},
	},
	"transport": {
		{10083, smtpGreets},
		{10086, httpAnswers("/metrics", http.StatusOK)},
	},
}

// servicePath is the PATH systemd gives a service, the only variable of
// the environment here.
const servicePath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// The relay's chatmail.ini, as far as filtermail reads it: the domain and
// the privacy keys, empty; everything else is the defaults.
const relayIni = `[params]
mail_domain = chat.example.org
privacy_postal =
privacy_mail =
privacy_pdo =
privacy_supervisor =
`

// TestReleaseRunsAsTheRelayRunsIt runs the release binary for this
// machine in each mode as the relay's units do: BIN CONFIG MODE, as an
// unprivileged user with no groups and no capabilities, with nothing in
// the environment but PATH (no NOTIFY_SOCKET), from the relay's config.
// Each mode has a network namespace of its own, where it binds the
// relay's default ports on 127.0.0.1 without colliding with anything on
// the machine, reaches its serving line, answers on every port, and
// exits 0 on SIGTERM.
func TestReleaseRunsAsTheRelayRunsIt(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root: it adds a user and enters network namespaces")
	}
	build, err := sharedRelease()
	if err != nil {
		t.Fatal(err)
	}
	// Everything the user reads is in a folder it may enter: the binary
	// where the relay puts it, under its relay name, and the config.
	dir, err := os.MkdirTemp("", "filtermail-release-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "filtermail")
	data, err := os.ReadFile(filepath.Join(build.out, hostReleaseBinary(t)))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	ini := filepath.Join(dir, "chatmail.ini")
	if err := os.WriteFile(ini, []byte(relayIni), 0o644); err != nil {
		t.Fatal(err)
	}
	u := addSystemUser(t)

	for _, mode := range []string{"outgoing", "incoming", "transport"} {
		t.Run(mode, func(t *testing.T) {
			p := startAsRelay(t, u, bin, ini, mode)
			log := p.log.String()
			t.Logf("%s logged on start:\n%s", mode, log)
			if first, _, _ := strings.Cut(log, "\n"); !strings.Contains(first, daemontest.ServingLine) {
				t.Errorf("the first line is not the serving line: %q", first)
			}

			// The process signalled is filtermail itself, as the user.
			pid := p.cmd.Process.Pid
			if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err != nil || exe != bin {
				t.Errorf("process %d runs %q (%v), want %s", pid, exe, err, bin)
			}
			status := procStatus(t, pid)
			ids := strings.Repeat(u.Uid+" ", 4)
			gids := strings.Repeat(u.Gid+" ", 4)
			for key, want := range map[string]string{"Uid": ids, "Gid": gids, "Groups": "", "CapPrm": "0000000000000000", "CapEff": "0000000000000000"} {
				if got := status[key]; got != strings.TrimSpace(want) {
					t.Errorf("process %d: %s: %q, want %q", pid, key, got, strings.TrimSpace(want))
				}
			}
			if env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid)); err != nil || string(env) != servicePath+"\x00" {
				t.Errorf("process %d: environment %q (%v), want only %s", pid, env, err, servicePath)
			}
			mine, _ := os.Readlink("/proc/self/ns/net")
			if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid)); err != nil || ns == mine {
				t.Fatalf("process %d: network namespace %q (%v), want a private one", pid, ns, err)
			}

			// It listens on exactly the relay's ports, and each answers.
			var want []string
			for _, l := range relayPorts[mode] {
				want = append(want, fmt.Sprintf("127.0.0.1:%d", l.port))
			}
			slices.Sort(want)
			if got := listening(t, pid, "tcp"); !slices.Equal(got, want) {
				t.Errorf("listening on %q, want %q", got, want)
			}
			if got := listening(t, pid, "tcp6"); len(got) > 0 {
				t.Errorf("listening on %q over IPv6, want nothing", got)
			}
			for _, l := range relayPorts[mode] {
				c, err := dialIn(pid, fmt.Sprintf("127.0.0.1:%d", l.port))
				if err != nil {
					t.Errorf("port %d: %v", l.port, err)
					continue
				}
				c.SetDeadline(time.Now().Add(30 * time.Second))
				t.Logf("port %d: %s", l.port, l.check(t, c))
				c.Close()
			}

			// SIGTERM to the process the unit's ExecStart started.
			if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			select {
			case <-p.exited:
			case <-time.After(2 * time.Minute):
				t.Fatalf("still running 2 minutes after SIGTERM:\n%s", p.log.String())
			}
			if code := p.cmd.ProcessState.ExitCode(); code != 0 {
				t.Errorf("exit code %d after SIGTERM (%v), want 0:\n%s", code, p.cmd.ProcessState, p.log.String())
			}
			t.Logf("%s logged on SIGTERM:\n%s", mode, strings.TrimPrefix(p.log.String(), log))
		})
	}
}

// addSystemUser adds a system user of the test's own, without a home or
// a shell, as the relay's vmail, and removes it (and its group) when the
// test ends, after the processes that run as it.
func addSystemUser(t *testing.T) *user.User {
	t.Helper()
	suffix := make([]byte, 4)
	rand.Read(suffix)
	name := fmt.Sprintf("fmrel%d-%x", os.Getpid(), suffix)
	if out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v\n%s", name, err, out)
		}
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	if u.Uid == "0" || u.Gid == "0" {
		t.Fatalf("user %s has uid %s, gid %s", name, u.Uid, u.Gid)
	}
	return u
}

// relayProcess is a filtermail started as the relay starts it.
type relayProcess struct {
	cmd    *exec.Cmd
	log    logtest.Buffer
	exited chan struct{}
}

// startAsRelay starts bin CONFIG MODE as u in a new network namespace
// whose loopback is up, and waits for its serving line. The shell that
// brings the loopback up becomes env, which clears the environment but
// PATH and becomes setpriv, which becomes filtermail as u: one process
// all along, so its pid is filtermail's. It is killed when the test ends
// if it still runs.
func startAsRelay(t *testing.T, u *user.User, bin, ini, mode string) *relayProcess {
	t.Helper()
	p := &relayProcess{exited: make(chan struct{})}
	p.cmd = exec.Command("unshare", "--net", "--", "sh", "-c",
		`ip link set lo up && exec env -i "$0" setpriv --reuid="$1" --regid="$2" --clear-groups -- "$3" "$4" "$5"`,
		servicePath, u.Uid, u.Gid, bin, ini, mode)
	p.cmd.Env = []string{servicePath}
	p.cmd.Dir = "/" // systemd's working directory for a service
	p.cmd.Stdout = &p.log
	p.cmd.Stderr = &p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("%s log:\n%s", mode, p.log.String())
		}
	})
	for deadline := time.Now().Add(time.Minute); !strings.Contains(p.log.String(), daemontest.ServingLine); time.Sleep(20 * time.Millisecond) {
		select {
		case <-p.exited:
			t.Fatalf("%s exited before serving (%v):\n%s", mode, p.cmd.ProcessState, p.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not reach its serving line in a minute:\n%s", mode, p.log.String())
		}
	}
	return p
}

// procStatus returns the fields of /proc/PID/status, each value's words
// joined by a space.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	status := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if key, value, ok := strings.Cut(line, ":"); ok {
			status[key] = strings.Join(strings.Fields(value), " ")
		}
	}
	return status
}

// listening returns the local addresses of the sockets that listen in
// the network namespace of process pid, from /proc/PID/net/tcp or tcp6
// (state 0A is LISTEN), sorted.
func listening(t *testing.T, pid int, file string) []string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, file))
	if err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 4 || f[3] != "0A" {
			continue
		}
		hexIP, hexPort, _ := strings.Cut(f[1], ":")
		port, err := strconv.ParseUint(hexPort, 16, 16)
		if err != nil {
			t.Fatalf("%s: %q", file, line)
		}
		// The address is printed as 32-bit words in the host's order.
		ip := make(net.IP, len(hexIP)/2)
		for w := 0; w+4 <= len(ip); w += 4 {
			v, err := strconv.ParseUint(hexIP[2*w:2*w+8], 16, 32)
			if err != nil {
				t.Fatalf("%s: %q", file, line)
			}
			byteorder.NativeEndian.PutUint32(ip[w:], uint32(v))
		}
		addrs = append(addrs, net.JoinHostPort(ip.String(), strconv.Itoa(int(port))))
	}
	slices.Sort(addrs)
	return addrs
}

// dialIn connects to addr in the network namespace of process pid. The
// socket is made on a thread that has entered that namespace and is
// never used again: a goroutine that ends locked to its thread ends the
// thread. The connection, once made, is used from anywhere.
func dialIn(pid int, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
		if err != nil {
			done <- result{nil, err}
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- result{nil, fmt.Errorf("setns: %w", err)}
			return
		}
		c, err := net.DialTimeout("tcp", addr, 30*time.Second)
		done <- result{c, err}
	}()
	r := <-done
	return r.c, r.err
}

// smtpGreets checks that an SMTP or LMTP server greets on c.
func smtpGreets(t *testing.T, c net.Conn) string {
	t.Helper()
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "220 ") {
		t.Errorf("greeting %q (%v), want 220", line, err)
	}
	fmt.Fprintf(c, "QUIT\r\n")
	return strings.TrimSpace(line)
}

// httpAnswers returns a check that GET path on c is answered with code.
func httpAnswers(path string, code int) func(t *testing.T, c net.Conn) string {
	return func(t *testing.T, c net.Conn) string {
		t.Helper()
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, c.RemoteAddr())
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Errorf("GET %s: %v", path, err)
			return ""
		}
		resp.Body.Close()
		if resp.StatusCode != code {
			t.Errorf("GET %s: %s, want %d", path, resp.Status, code)
		}
		return fmt.Sprintf("GET %s: %s", path, resp.Status)
	}
}
