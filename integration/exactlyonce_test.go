package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"filtermail/filter/filtertest"
)

// Exactly once under faults: whatever happens to filtermail or to
// Postfix's reinjection smtpd while mail is in flight, a client that
// heard 2xx at the end of DATA has its message delivered once, and a
// client that heard anything else (a 4xx, or nothing: a broken
// connection) has it delivered not at all. A fault is never a 5xx.

// TestSIGTERMDuringTransfers stops the outgoing filter while 20 clients
// are in the middle of their bodies.
func TestSIGTERMDuringTransfers(t *testing.T) {
	const clients = 20
	r := startRelay(t)
	trs := newTransfers(t, 0, clients, 3<<20)
	crowd := newCrowd(t)
	inData := make(chan error, clients) // nil once a client is in the middle of its body
	goOn := make(chan struct{})
	body := func(c *client, stuffed []byte) error {
		first := len(stuffed) / 4
		err := c.write(stuffed[:first])
		inData <- err
		if err != nil {
			return err
		}
		select {
		case <-goOn:
		case <-crowd.ctx.Done():
			return crowd.ctx.Err()
		}
		// The rest in pieces, slowly: data keeps coming in while
		// filtermail stops.
		for rest := stuffed[first:]; len(rest) > 0; {
			n := min(len(rest), 256<<10)
			if err := c.write(rest[:n]); err != nil {
				return err
			}
			rest = rest[n:]
			time.Sleep(5 * time.Millisecond)
		}
		return nil
	}
	crowd.send(r.submission, trs, time.Now().Add(2*time.Minute), body)

	deadline := time.After(60 * time.Second)
	for i := range clients {
		select {
		case err := <-inData:
			if err != nil {
				t.Fatalf("a client broke off before filtermail stopped: %v", err)
			}
		case <-deadline:
			t.Fatalf("%d of %d clients got into DATA", i, clients)
		}
	}
	start := time.Now()
	if err := r.outgoing.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Once filtermail takes no more connections, it has begun to stop,
	// with all 20 transactions open.
	waitRefused(t, net.JoinHostPort(r.Host, "10080"))
	close(goOn)
	crowd.wait()
	t.Logf("SIGTERM with %d clients in DATA; the last reply %v later", clients, time.Since(start).Round(time.Millisecond))
	select {
	case <-r.outgoing.Exited:
	case <-time.After(30 * time.Second):
		t.Fatal("filtermail did not exit after SIGTERM")
	}
	if code := r.outgoing.Cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("filtermail exited with %d, want 0", code)
	}
	checkExactlyOnce(t, r, trs)
}

// TestReinjectionKilledMidTransfer kills Postfix's reinjection smtpd
// processes with SIGKILL while filtermail hands bodies to them. A kill
// lands mid-body, where Postfix cannot have taken the message: the
// process is stopped as soon as it has a session, let go on a
// millisecond at a time until it has received part of the body, and
// killed only if it has not received the whole message. Killed after it
// has (Postfix has queued the message but not said so), the message
// would be delivered and the client told to try again, a duplicate that
// no client of SMTP can prevent (RFC 1047). Kills land alternately early
// in the body and in its last MB, where filtermail has written it all
// and waits for the reply; every other session caught goes on, so that
// replies of both kinds come while processes are killed. Only processes
// that have served a session before are killed: one killed in its first
// makes Postfix's master take the program for broken and start no new
// ones for a minute ("bad command startup -- throttling"), and the test
// would wait for that.
func TestReinjectionKilledMidTransfer(t *testing.T) {
	const clients = 8
	r := startRelay(t)
	trs := newTransfers(t, 0, clients, 6<<20)
	crowd := newCrowd(t)
	ri := newReinjection(t, r)
	ri.warm(clients)
	var (
		mu                          sync.Mutex
		caught, kills, early, first int
	)
	watch := ri.watch(func(s reinjectSession) {
		if !ri.served(s.pid) {
			mu.Lock()
			first++
			mu.Unlock()
			ri.cont(s.pid)
			ri.logf("smtpd %d is in its first session: left alone", s.pid)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		// Kills alternate between the start of the body and its end,
		// where filtermail has written all and waits for the reply.
		target := uint64(inBody)
		if caught%4 == 2 {
			target = minLen(trs) - 1<<20
		}
		received, ok := ri.catch(s, target)
		if !ok {
			return
		}
		if received >= minLen(trs) {
			ri.cont(s.pid)
			early++
			ri.logf("smtpd %d had received %d bytes, the whole message: left to go on", s.pid, received)
			return
		}
		caught++
		if caught%2 == 0 {
			ri.cont(s.pid)
			ri.logf("smtpd %d stopped mid-body, at %d of about %d bytes: left to go on", s.pid, received, minLen(trs))
			return
		}
		if ri.kill(s.pid) {
			kills++
			ri.logf("smtpd %d killed mid-body, at %d of about %d bytes", s.pid, received, minLen(trs))
		}
	})
	crowd.send(r.submission, trs, time.Now().Add(2*time.Minute), fullBody)
	crowd.wait()
	watch.stop()
	t.Logf("%d of %d hand-overs caught mid-body, %d of them killed; %d caught only once Postfix had the whole message; %d in a process's first session",
		caught, clients, kills, early, first)
	if kills == 0 {
		t.Fatal("no kill landed while a body was in flight")
	}

	// Postfix's master runs new processes for the service: the next
	// message goes through, once.
	fresh := newTransfers(t, clients, 1, 1<<10)
	fresh[0].send(context.Background(), r.submission, time.Now().Add(time.Minute), fullBody)
	if !strings.HasPrefix(fresh[0].reply, "2") {
		t.Errorf("after the kills, a new message: %s", fresh[0].heard())
	}
	checkExactlyOnce(t, r, append(trs, fresh...))
}

// TestReinjectionStalled stops Postfix's reinjection smtpd processes
// with SIGSTOP early in the bodies that filtermail hands them, as
// TestReinjectionKilledMidTransfer does, and lets them go on once the
// clients have their answers: a 4xx when filtermail's time for the
// hand-over is up (80 s, within Postfix's smtpd_proxy_timeout), and
// nothing delivered when Postfix resumes.
func TestReinjectionStalled(t *testing.T) {
	const clients = 4
	r := startRelay(t)
	// Far larger than what the sockets between filtermail and a stopped
	// smtpd hold: the end of the message never reaches Postfix while it
	// is stopped.
	trs := newTransfers(t, 0, clients, 12<<20)
	crowd := newCrowd(t)
	ri := newReinjection(t, r)
	ri.warm(clients) // see TestReinjectionKilledMidTransfer
	var (
		mu      sync.Mutex
		stalled []reinjectSession
		late    int
	)
	watch := ri.watch(func(s reinjectSession) {
		received, ok := ri.catch(s, inBody)
		if !ok {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if received > stallBefore {
			ri.cont(s.pid)
			late++
			ri.logf("smtpd %d caught late, at %d of about %d bytes: left to go on", s.pid, received, minLen(trs))
			return
		}
		stalled = append(stalled, s)
		ri.logf("smtpd %d stopped mid-body, at %d of about %d bytes", s.pid, received, minLen(trs))
	})
	start := time.Now()
	crowd.send(r.submission, trs, time.Now().Add(3*time.Minute), fullBody)
	crowd.wait()
	watch.stop()
	t.Logf("%d of %d hand-overs stalled mid-body, %d caught too late; the last reply %v after the first connection",
		len(stalled), clients, late, time.Since(start).Round(time.Second))
	if len(stalled) == 0 {
		t.Fatal("no hand-over was stalled mid-body")
	}
	var fourxx int
	for _, tr := range trs {
		switch {
		case strings.HasPrefix(tr.reply, "4"):
			fourxx++
		case !strings.HasPrefix(tr.reply, "2"):
			t.Errorf("client %d: %s, want 4xx", tr.n, tr.heard())
		}
	}
	if fourxx < len(stalled) {
		t.Errorf("%d clients got 4xx, but %d hand-overs were stalled", fourxx, len(stalled))
	}

	// filtermail has given up on the stopped sessions; Postfix resumes
	// them and must find their messages cut short. What filtermail's
	// side of a connection still held when it closed reaches Postfix
	// after the resumption: at most its socket's send buffer.
	sndMax := sendBufferMax(t)
	for _, s := range stalled {
		received, _, err := s.tcpInfo()
		switch {
		case err != nil:
			t.Errorf("smtpd %d's session: %v", s.pid, err)
			ri.cont(s.pid)
		case received+sndMax >= minLen(trs):
			// Not the case this test is about: the end of the
			// message may reach Postfix, which would take it.
			t.Logf("smtpd %d has %d bytes and may get %d more, the whole message: killed, not resumed", s.pid, received, sndMax)
			ri.kill(s.pid)
		default:
			t.Logf("smtpd %d resumed, at %d of about %d bytes, %d more to come at most", s.pid, received, minLen(trs), sndMax)
			ri.cont(s.pid)
		}
	}
	fresh := newTransfers(t, clients, 1, 1<<10)
	fresh[0].send(context.Background(), r.submission, time.Now().Add(time.Minute), fullBody)
	if !strings.HasPrefix(fresh[0].reply, "2") {
		t.Errorf("after the stall, a new message: %s", fresh[0].heard())
	}
	checkExactlyOnce(t, r, append(trs, fresh...))
}

// sendBufferMax is the most a TCP socket's send buffer holds (tcp_wmem).
func sendBufferMax(t *testing.T) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_wmem")
	f := strings.Fields(string(b))
	if err != nil || len(f) != 3 {
		t.Fatalf("tcp_wmem: %q, %v", b, err)
	}
	n, err := strconv.ParseUint(f[2], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// stallBefore bounds how much of a message a stalled smtpd has received:
// a message of 12 MB is then more than the sockets' buffers between
// filtermail and Postfix hold (a few MB).
const stallBefore = 1 << 20

// inBody is how much of a hand-over Postfix has received once it is well
// into the body: the commands before it are far shorter.
const inBody = 32 << 10

// transfer is one client's message through Postfix's submission service,
// to bob on the internet and carol here, and what the client heard.
type transfer struct {
	n     int
	from  string
	msg   []byte
	key   string // the message's payload, see payloadKey
	reply string // at the end of data, or the refusal before it; "" for none
	err   error  // why there was no reply
}

// newTransfers makes n messages of about size bytes, numbered from
// first, each from a sender of its own (the rate limit is per sender)
// and with a payload of its own.
func newTransfers(t *testing.T, first, n, size int) []*transfer {
	t.Helper()
	trs := make([]*transfer, n)
	keys := map[string]bool{}
	for j := range trs {
		i := first + j
		from := fmt.Sprintf("sender%02d@%s", i, domain)
		seed := sha256.Sum256(fmt.Appendf(nil, "%s %d %d", t.Name(), i, time.Now().UnixNano()))
		payload := make([]byte, size*3/4) // ASCII armor adds a third
		rand.NewChaCha8(seed).Read(payload)
		msg := filtertest.Encrypted(from, bob, filtertest.GoCryptoV6(t, payload))
		trs[j] = &transfer{n: i, from: from, msg: msg, key: payloadKey(msg)}
		if trs[j].key == "" || keys[trs[j].key] {
			t.Fatalf("message %d has no payload of its own", i)
		}
		keys[trs[j].key] = true
	}
	return trs
}

// minLen is the length of the shortest of the messages.
func minLen(trs []*transfer) uint64 {
	n := len(trs[0].msg)
	for _, tr := range trs {
		n = min(n, len(tr.msg))
	}
	return uint64(n)
}

// payloadKey names a message by its armored OpenPGP payload, wherever it
// arrives: maildirs store lines with LF, SMTP with CRLF.
func payloadKey(msg []byte) string {
	msg = bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n"))
	i := bytes.Index(msg, []byte("-----BEGIN PGP MESSAGE-----"))
	j := bytes.Index(msg, []byte("-----END PGP MESSAGE-----"))
	if i < 0 || j < i {
		return ""
	}
	sum := sha256.Sum256(msg[i:j])
	return hex.EncodeToString(sum[:8])
}

// heard says what the client heard.
func (tr *transfer) heard() string {
	if tr.reply == "" {
		return fmt.Sprintf("no reply (%v)", tr.err)
	}
	return fmt.Sprintf("%q", tr.reply)
}

// fullBody writes the whole body at once.
func fullBody(c *client, stuffed []byte) error { return c.write(stuffed) }

// crowd runs transfers at once, each in a goroutine of its own. When the
// test ends, the transfers still running are broken off and waited for.
type crowd struct {
	ctx    context.Context // done when the test ends
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newCrowd(t *testing.T) *crowd {
	c := &crowd{}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	t.Cleanup(func() {
		c.cancel()
		c.wg.Wait()
	})
	return c
}

// send starts the transfers through Postfix at addr, with body writing
// each body; every read and write ends by deadline at the latest.
func (c *crowd) send(addr string, trs []*transfer, deadline time.Time, body func(*client, []byte) error) {
	for _, tr := range trs {
		c.wg.Go(func() { tr.send(c.ctx, addr, deadline, body) })
	}
}

// wait waits until every transfer has its reply, or broke off.
func (c *crowd) wait() { c.wg.Wait() }

// send runs the transfer through Postfix at addr: MAIL, RCPT for bob and
// carol, DATA, the body as body writes it, and the end of data. It
// records the reply and never fails the test: it runs in goroutines.
func (tr *transfer) send(ctx context.Context, addr string, deadline time.Time, body func(*client, []byte) error) {
	c, err := dialClient(ctx, addr, deadline)
	if err != nil {
		tr.err = err
		return
	}
	defer c.close()
	for _, cmd := range []struct {
		line string
		want int
	}{{"MAIL FROM:<" + tr.from + ">", 250}, {"RCPT TO:<" + bob + ">", 250}, {"RCPT TO:<" + carol + ">", 250}, {"DATA", 354}} {
		if tr.reply, tr.err = c.cmd(cmd.line); tr.err != nil || !strings.HasPrefix(tr.reply, strconv.Itoa(cmd.want)) {
			return
		}
	}
	werr := body(c, dotStuff(tr.msg))
	if werr == nil {
		werr = c.write([]byte(".\r\n"))
	}
	// A server may answer and close while the body is still coming.
	tr.reply, tr.err = c.reply()
	if tr.err != nil && werr != nil {
		tr.err = fmt.Errorf("%v; then %v", werr, tr.err)
	}
	if tr.err == nil {
		c.cmd("QUIT")
	}
}

// client is an SMTP client for transfers: it reports errors instead of
// failing the test.
type client struct {
	conn net.Conn
	text *textproto.Conn
	stop func() bool
}

// dialClient connects to addr, reads the greeting and says EHLO. The
// connection closes at deadline, or when ctx is done.
func dialClient(ctx context.Context, addr string, deadline time.Time) (*client, error) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(deadline)
	c := &client{conn: conn, text: textproto.NewConn(conn), stop: context.AfterFunc(ctx, func() { conn.Close() })}
	if reply, err := c.reply(); err != nil || !strings.HasPrefix(reply, "220") {
		c.close()
		return nil, fmt.Errorf("greeting %q: %v", reply, err)
	}
	if reply, err := c.cmd("EHLO client.test"); err != nil || !strings.HasPrefix(reply, "250") {
		c.close()
		return nil, fmt.Errorf("EHLO: %q: %v", reply, err)
	}
	return c, nil
}

func (c *client) close() {
	c.stop()
	c.conn.Close()
}

// cmd sends a command line and returns the reply.
func (c *client) cmd(line string) (string, error) {
	if err := c.text.PrintfLine("%s", line); err != nil {
		return "", err
	}
	return c.reply()
}

// reply reads a reply: "code text", the text its last line.
func (c *client) reply() (string, error) {
	code, msg, err := c.text.ReadResponse(0)
	if code == 0 {
		return "", err
	}
	lines := strings.Split(msg, "\n")
	return strconv.Itoa(code) + " " + lines[len(lines)-1], nil
}

// write sends bytes of the body as they are.
func (c *client) write(p []byte) error {
	_, err := c.conn.Write(p)
	return err
}

// dotStuff doubles the dot at the start of every line of msg, which ends
// in CRLF.
func dotStuff(msg []byte) []byte {
	out := bytes.ReplaceAll(msg, []byte("\r\n."), []byte("\r\n.."))
	if bytes.HasPrefix(out, []byte(".")) {
		out = append([]byte("."), out...)
	}
	return out
}

// waitRefused waits until nothing listens on addr any more.
func waitRefused(t *testing.T, addr string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("%s still takes connections", addr)
		}
	}
}

// checkExactlyOnce checks what arrived of the transfers, once all of
// them have their replies: a message whose client heard 2xx arrived
// once at the internet sink and once in carol's maildir, any other not
// at all, and no client heard 5xx.
func checkExactlyOnce(t *testing.T, r *relay, trs []*transfer) {
	t.Helper()
	// A session that filtermail gave up on may still be with Postfix;
	// once none is left, the queue holds all that will ever arrive.
	ri := newReinjection(t, r)
	for deadline := time.Now().Add(20 * time.Second); len(ri.sessions()) > 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("Postfix's reinjection service still has sessions")
		}
	}
	r.waitQueueEmpty()
	atSink, inMaildir := map[string]int{}, map[string]int{}
	for _, m := range r.sink.Messages() {
		atSink[payloadKey(m.Data)]++
	}
	for _, m := range r.Mailbox("carol") {
		inMaildir[payloadKey(m)]++
	}
	var got2xx, got4xx, broken int
	for _, tr := range trs {
		want := 0
		switch {
		case strings.HasPrefix(tr.reply, "2"):
			want = 1
			got2xx++
		case strings.HasPrefix(tr.reply, "4"):
			got4xx++
		case strings.HasPrefix(tr.reply, "5"):
			t.Errorf("client %d heard %s: a fault must never refuse good mail", tr.n, tr.heard())
		default:
			broken++
		}
		if atSink[tr.key] != want || inMaildir[tr.key] != want {
			t.Errorf("client %d heard %s, and its message arrived %d times at the sink and %d times in the maildir, want %d",
				tr.n, tr.heard(), atSink[tr.key], inMaildir[tr.key], want)
		}
		delete(atSink, tr.key)
		delete(inMaildir, tr.key)
	}
	if len(atSink) > 0 || len(inMaildir) > 0 {
		t.Errorf("messages that no client sent arrived: %d at the sink, %d in the maildir", len(atSink), len(inMaildir))
	}
	t.Logf("%d clients: %d heard 2xx, %d heard 4xx, %d no reply", len(trs), got2xx, got4xx, broken)
}

// reinjection finds the sessions of a relay's outgoing reinjection
// service (README.md's master.cf: 127.0.0.1:10025, on the relay's
// host): connections from filtermail to the smtpd processes that the
// instance's master runs for that service, with `-n` and the service's
// name on their command line.
type reinjection struct {
	t       *testing.T
	addr    string // the service's name and address
	master  int    // the instance's master process
	sockets sync.Map
	stopped sync.Map // pids of processes stopped and not yet continued or killed
	used    sync.Map // pids of processes that have served a session before
}

// reinjectSession is one connection to a reinjection smtpd, on its side.
type reinjectSession struct {
	pid, fd int
	socket  string // "socket:[inode]"
}

// newReinjection finds r's reinjection service. Processes it stops are
// continued when the test ends, before anything else is cleaned up.
func newReinjection(t *testing.T, r *relay) *reinjection {
	t.Helper()
	pid, err := os.ReadFile(filepath.Join(r.dir, "queue", "pid", "master.pid"))
	if err != nil {
		t.Fatal(err)
	}
	master, err := strconv.Atoi(strings.TrimSpace(string(pid)))
	if err != nil {
		t.Fatalf("master.pid: %v", err)
	}
	// The sessions are looked at through copies of smtpd's sockets
	// (pidfd_getfd, Linux 5.6).
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	self, err := unix.PidfdOpen(os.Getpid(), 0)
	if err == nil {
		var fd int
		if fd, err = unix.PidfdGetfd(self, int(null.Fd()), 0); err == nil {
			unix.Close(fd)
		}
		unix.Close(self)
	}
	if err != nil {
		t.Fatalf("pidfd_getfd: %v (needs Linux 5.6)", err)
	}
	addr := r.Addr(reinjectService)
	ri := &reinjection{t: t, addr: addr, master: master}
	t.Cleanup(ri.contAll)
	return ri
}

// smtpds returns the processes of the service.
func (ri *reinjection) smtpds() []int {
	var pids []int
	for _, pid := range ri.children() {
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		i := slices.Index(args, "-n")
		if filepath.Base(args[0]) == "smtpd" && i > 0 && i+1 < len(args) && args[i+1] == ri.addr {
			pids = append(pids, pid)
		}
	}
	return pids
}

// children returns the processes of the instance's master.
func (ri *reinjection) children() []int {
	var pids []int
	if list, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", ri.master, ri.master)); err == nil {
		for _, f := range strings.Fields(string(list)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
		return pids
	}
	// A kernel without CONFIG_PROC_CHILDREN: every process.
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		if pid, err := strconv.Atoi(d.Name()); err == nil && parent(pid) == ri.master {
			pids = append(pids, pid)
		}
	}
	return pids
}

// parent returns the parent of process pid, or 0.
func parent(pid int) int {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "PPid:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

// sessions returns the connections that the service's processes have
// open on its address.
func (ri *reinjection) sessions() []reinjectSession {
	var ss []reinjectSession
	for _, pid := range ri.smtpds() {
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, f := range fds {
			fd, err := strconv.Atoi(f.Name())
			if err != nil {
				continue
			}
			link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", pid, fd))
			if err != nil || !strings.HasPrefix(link, "socket:") {
				continue
			}
			s := reinjectSession{pid: pid, fd: fd, socket: link}
			is, known := ri.sockets.Load(link)
			if !known {
				is = ri.isSession(s)
				ri.sockets.Store(link, is)
			}
			if is.(bool) {
				ss = append(ss, s)
			}
		}
	}
	return ss
}

// isSession reports whether s is a connection to the service's address.
func (ri *reinjection) isSession(s reinjectSession) bool {
	fd, err := s.dup()
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	local, err := unix.Getsockname(fd)
	if err != nil {
		return false
	}
	if _, err := unix.Getpeername(fd); err != nil {
		return false // the listening socket
	}
	in4, ok := local.(*unix.SockaddrInet4)
	return ok && net.JoinHostPort(net.IP(in4.Addr[:]).String(), strconv.Itoa(in4.Port)) == ri.addr
}

// dup returns a copy of the session's socket, which the caller closes at
// once: while it is open, the connection outlives the process.
func (s reinjectSession) dup() (int, error) {
	pidfd, err := unix.PidfdOpen(s.pid, 0)
	if err != nil {
		return -1, err
	}
	defer unix.Close(pidfd)
	fd, err := unix.PidfdGetfd(pidfd, s.fd, 0)
	if err != nil {
		return -1, err
	}
	// The process may have closed the descriptor, and opened another
	// under its number.
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || fmt.Sprintf("socket:[%d]", st.Ino) != s.socket {
		unix.Close(fd)
		return -1, errors.New("the session has ended")
	}
	return fd, nil
}

// tcpInfo returns how many bytes the session's socket has received from
// filtermail, whether or not smtpd has read them, and its TCP state.
func (s reinjectSession) tcpInfo() (received uint64, state uint8, err error) {
	fd, err := s.dup()
	if err != nil {
		return 0, 0, err
	}
	defer unix.Close(fd)
	info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return 0, 0, err
	}
	return info.Bytes_received, info.State, nil
}

// warm has n processes of the service serve a session each, a greeting
// and QUIT: n connections at once, each served by a process of its own.
func (ri *reinjection) warm(n int) {
	ri.t.Helper()
	var conns []*textproto.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		conn, err := net.DialTimeout("tcp", ri.addr, 10*time.Second)
		if err != nil {
			ri.t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(30 * time.Second))
		c := textproto.NewConn(conn)
		conns = append(conns, c)
		if _, _, err := c.ReadResponse(220); err != nil {
			ri.t.Fatalf("reinjection greeting: %v", err)
		}
	}
	pids := map[int]bool{}
	for _, s := range ri.sessions() {
		pids[s.pid] = true
		ri.used.Store(s.pid, true)
	}
	if len(pids) != n {
		ri.t.Fatalf("%d connections to the reinjection service, served by %d processes", n, len(pids))
	}
	for _, c := range conns {
		if _, err := c.Cmd("QUIT"); err != nil {
			ri.t.Fatal(err)
		}
		if _, _, err := c.ReadResponse(221); err != nil {
			ri.t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(20 * time.Second); len(ri.sessions()) > 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			ri.t.Fatal("the reinjection sessions do not end")
		}
	}
}

// served reports whether process pid has served a session before the
// one it is in.
func (ri *reinjection) served(pid int) bool {
	_, ok := ri.used.Load(pid)
	return ok
}

// watcher looks at the service's sessions until it is stopped.
type watcher struct {
	quit chan struct{}
	done chan struct{}
	once sync.Once
}

// watch calls found for every new session of the service, as soon as
// it sees it (it looks every millisecond), with the session's process
// stopped: found continues it, kills it, or leaves it stopped. It stops
// when the test ends at the latest.
func (ri *reinjection) watch(found func(s reinjectSession)) *watcher {
	w := &watcher{quit: make(chan struct{}), done: make(chan struct{})}
	// When the test ends, before anything else, the watcher stops and
	// the processes it stopped go on.
	ri.t.Cleanup(func() {
		w.stop()
		ri.contAll()
	})
	// One goroutine looks and stops what is new, another hands it to
	// found: a session is stopped when it is seen, however long found
	// takes with the one before.
	news := make(chan reinjectSession, 1000)
	go func() {
		defer close(news)
		seen := map[string]bool{}
		last := map[int]string{} // each process's session as last seen
		for {
			select {
			case <-w.quit:
				return
			case <-time.After(time.Millisecond):
			}
			for _, s := range ri.sessions() {
				if prev, ok := last[s.pid]; ok && prev != s.socket {
					ri.used.Store(s.pid, true)
				}
				last[s.pid] = s.socket
				if !seen[s.socket] {
					seen[s.socket] = true
					if syscall.Kill(s.pid, syscall.SIGSTOP) == nil {
						ri.stopped.Store(s.pid, true)
					}
					news <- s
				}
			}
		}
	}()
	go func() {
		defer close(w.done)
		for s := range news {
			select {
			case <-w.quit:
				ri.cont(s.pid)
			default:
				found(s)
			}
		}
	}()
	return w
}

func (w *watcher) stop() {
	w.once.Do(func() { close(w.quit) })
	<-w.done
}

// catch stops the session's process with SIGSTOP, and lets it go on a
// millisecond at a time until the session has received at least target
// bytes from filtermail. It returns what the session has received, with
// the process stopped: Postfix has read no more than that. It returns
// false, with the process going on, if the session ended or did not get
// there within 20 s.
func (ri *reinjection) catch(s reinjectSession, target uint64) (received uint64, ok bool) {
	if !ri.stop(s.pid) {
		return 0, false
	}
	for deadline := time.Now().Add(20 * time.Second); ; {
		received, _, err := s.tcpInfo()
		if err == nil && received >= target {
			return received, true
		}
		if err != nil || time.Now().After(deadline) {
			ri.cont(s.pid)
			return received, false
		}
		syscall.Kill(s.pid, syscall.SIGCONT)
		time.Sleep(time.Millisecond)
		if !ri.stop(s.pid) {
			return 0, false
		}
	}
}

// stop stops process pid with SIGSTOP and waits until it stands still.
func (ri *reinjection) stop(pid int) bool {
	if syscall.Kill(pid, syscall.SIGSTOP) != nil {
		return false
	}
	ri.stopped.Store(pid, true)
	// The signal takes effect when the process next leaves the kernel:
	// a read under way still completes.
	for deadline := time.Now().Add(5 * time.Second); !stoppedState(pid); time.Sleep(100 * time.Microsecond) {
		if time.Now().After(deadline) {
			ri.cont(pid)
			return false
		}
	}
	return true
}

// stoppedState reports whether process pid is stopped by a signal.
func stoppedState(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, after, ok := bytes.Cut(stat, []byte(") "))
	return ok && len(after) > 0 && after[0] == 'T'
}

// cont continues a process stopped by stop.
func (ri *reinjection) cont(pid int) {
	if _, ok := ri.stopped.LoadAndDelete(pid); ok {
		syscall.Kill(pid, syscall.SIGCONT)
	}
}

// contAll continues every process stopped by stop.
func (ri *reinjection) contAll() {
	ri.stopped.Range(func(pid, _ any) bool {
		ri.cont(pid.(int))
		return true
	})
}

// kill kills a process with SIGKILL, stopped or not.
func (ri *reinjection) kill(pid int) bool {
	err := syscall.Kill(pid, syscall.SIGKILL)
	ri.stopped.Delete(pid)
	return err == nil
}

// logf logs from the watcher's goroutine.
func (ri *reinjection) logf(format string, args ...any) {
	ri.t.Logf(format, args...)
}
