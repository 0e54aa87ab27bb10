package main

// Hostile peers (issue 13, "Every input bounded"): each test runs one abuse
// against the outgoing filter and, while it runs, a well-behaved client
// sends an encrypted message that must get 250 and reach Postfix. The
// abusers' replies are checked where the bound that stops them says what
// they get; what else becomes of them is logged.

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"filtermail/filter/filtertest"
	"filtermail/smtpd/smtpdtest"
)

// goodClientDeadline bounds the well-behaved client's whole session, from
// connecting to the reply at the end of its message.
const goodClientDeadline = 60 * time.Second

// noRateLimit are the [params] lines that keep the sender's rate limit
// out of the way of tests that send as alice many times.
var noRateLimit = []string{"max_user_send_per_minute = 1000000", "max_user_send_burst_size = 1000000"}

// goodMessage is the well-behaved client's message: encrypted, from alice.
func goodMessage(t *testing.T) []byte {
	return filtertest.Encrypted(alice, bob, filtertest.GoCryptoV6(t, []byte("a message in a hostile crowd")))
}

// goodResult is what the well-behaved client got.
type goodResult struct {
	reply     string        // at the end of data, or the refusal that ended the session
	took      time.Duration // from connecting to that reply
	lockedOut time.Duration // how long MAIL was answered 450 before it was taken
	refusal   string        // the first of those 450s
	err       error         // a step that failed: its reply or the connection's error
}

// goodSend sends msg from a sender to bob as a well-behaved client does, on a
// connection of its own, all within the given time. With retryRate, a 450
// to MAIL (the sender's rate) is tried again every 100 ms.
func goodSend(addr, from string, msg []byte, within time.Duration, retryRate bool) (r goodResult) {
	start := time.Now()
	defer func() { r.took = time.Since(start) }()
	conn, err := net.DialTimeout("tcp", addr, within)
	if err != nil {
		r.err = fmt.Errorf("connecting: %w", err)
		return r
	}
	defer conn.Close()
	conn.SetDeadline(start.Add(within))
	tc := textproto.NewConn(conn)
	step := func(what, line string, want int) bool {
		if line != "" {
			if err := tc.PrintfLine("%s", line); err != nil {
				r.err = fmt.Errorf("%s after %v: %w", what, time.Since(start).Round(time.Millisecond), err)
				return false
			}
		}
		code, text, err := tc.ReadResponse(0)
		if err != nil && code == 0 {
			r.err = fmt.Errorf("%s after %v: %w", what, time.Since(start).Round(time.Millisecond), err)
			return false
		}
		lines := strings.Split(text, "\n")
		r.reply = strconv.Itoa(code) + " " + lines[len(lines)-1]
		if code != want {
			r.err = fmt.Errorf("%s: reply %q", what, r.reply)
			return false
		}
		return true
	}
	if !step("greeting", "", 220) || !step("EHLO", "EHLO good.test", 250) {
		return r
	}
	var refused time.Time
	for !step("MAIL", "MAIL FROM:<"+from+">", 250) {
		if !retryRate || !strings.HasPrefix(r.reply, "450 ") {
			return r
		}
		if refused.IsZero() {
			refused, r.refusal = time.Now(), r.reply
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !refused.IsZero() {
		r.lockedOut = time.Since(refused)
	}
	r.err = nil
	if !step("RCPT", "RCPT TO:<"+bob+">", 250) || !step("DATA", "DATA", 354) {
		return r
	}
	w := tc.DotWriter()
	w.Write(msg)
	if err := w.Close(); err != nil {
		r.err = fmt.Errorf("message: %w", err)
		return r
	}
	if step("end of data", "", 250) {
		tc.PrintfLine("QUIT")
	}
	return r
}

// wantServed runs the well-behaved client and fails the test unless it
// got 250 within goodClientDeadline and the sink has its message.
func wantServed(t *testing.T, d *daemon, sink *smtpdtest.Sink, from string, msg []byte, retryRate bool) goodResult {
	t.Helper()
	r := goodSend(d.addr(), from, msg, goodClientDeadline, retryRate)
	if r.err != nil {
		t.Errorf("good client not served within %v: %v (after %v)", goodClientDeadline, r.err, r.took.Round(time.Millisecond))
		return r
	}
	t.Logf("good client %s: %q after %v", from, r.reply, r.took.Round(time.Millisecond))
	for _, m := range sink.Messages() {
		if m.From == from && bytes.Equal(m.Data, msg) {
			return r
		}
	}
	t.Errorf("good client got %q, but the sink does not have its message", r.reply)
	return r
}

// crowd holds a test's abusive connections and the goroutines that drive
// them: when the test ends, passed or failed, every connection is closed
// and every goroutine has returned.
type crowd struct {
	start time.Time
	stop  chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
}

func newCrowd(t testing.TB) *crowd {
	c := &crowd{start: time.Now(), stop: make(chan struct{})}
	t.Cleanup(func() {
		close(c.stop)
		c.mu.Lock()
		for _, conn := range c.conns {
			conn.Close()
		}
		c.mu.Unlock()
		c.wg.Wait()
	})
	return c
}

// add makes conn one of the crowd's, closed when the test ends.
func (c *crowd) add(conn net.Conn) {
	c.mu.Lock()
	c.conns = append(c.conns, conn)
	c.mu.Unlock()
}

func (c *crowd) dial(addr string) (net.Conn, error) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err == nil {
		c.add(conn)
	}
	return conn, err
}

// dialSMTP opens an abusive connection that starts like a good one:
// greeting read, EHLO said, and the given commands answered as wanted.
// It is closed when the test ends.
func (c *crowd) dialSMTP(t *testing.T, d *daemon, cmds ...string) *smtpdtest.Client {
	t.Helper()
	cl := smtpdtest.Dial(t, d.addr())
	c.add(cl.Conn)
	for i := 0; i+1 < len(cmds); i += 2 {
		if reply := cl.Cmd(cmds[i]); !strings.HasPrefix(reply, cmds[i+1]) {
			t.Fatalf("%s: reply %q, want %q", cmds[i], reply, cmds[i+1])
		}
	}
	return cl
}

// run runs f in a goroutine that the end of the test waits for.
func (c *crowd) run(f func()) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
}

// sleep waits d, or less when the test ends; it reports whether the test
// goes on.
func (c *crowd) sleep(d time.Duration) bool {
	select {
	case <-c.stop:
		return false
	case <-time.After(d):
		return true
	}
}

func (c *crowd) since() time.Duration { return time.Since(c.start).Round(100 * time.Millisecond) }

// fate is what an abusive connection was told by the daemon, as a reader
// goroutine of the crowd saw it.
type fate struct {
	mu      sync.Mutex
	n       int            // reply lines (final lines only)
	first   []string       // the first few of them
	last    string         // the last of them
	codes   map[string]int // lines by code
	firstAt map[string]int // the index of the first line of each code
	ended   time.Duration  // when the daemon ended the connection, since the crowd started; 0 while open
	err     error          // how it ended: io.EOF for a close, or a read error
}

// watch reads r, the daemon's side of conn, in a goroutine of the crowd,
// until the connection ends.
func (c *crowd) watch(r io.Reader) *fate {
	f := &fate{codes: map[string]int{}, firstAt: map[string]int{}}
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReader(r)
	}
	c.run(func() {
		for {
			line, err := br.ReadString('\n')
			if len(line) >= 4 && line[3] != '-' {
				f.add(strings.TrimRight(line, "\r\n"))
			}
			if err != nil {
				select {
				case <-c.stop: // closed by the test
				default:
					f.mu.Lock()
					f.ended, f.err = time.Since(c.start), err
					f.mu.Unlock()
				}
				return
			}
		}
	})
	return f
}

func (f *fate) add(line string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	code := line[:3]
	if _, ok := f.firstAt[code]; !ok {
		f.firstAt[code] = f.n
	}
	f.codes[code]++
	if len(f.first) < 5 {
		f.first = append(f.first, line)
	}
	f.last = line
	f.n++
}

// replies returns the number of reply lines seen and whether the
// connection has ended.
func (f *fate) replies() (int, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n, f.ended != 0
}

// wait waits until n reply lines came or the connection ended, at most
// for the given time, and reports whether they came or it ended.
func (f *fate) wait(n int, within time.Duration) bool {
	for deadline := time.Now().Add(within); ; time.Sleep(10 * time.Millisecond) {
		if got, ended := f.replies(); got >= n || ended {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

func (f *fate) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := fmt.Sprintf("%d replies %v", f.n, f.codes)
	if f.n > 0 {
		s += fmt.Sprintf(", first %q, last %q", f.first, f.last)
	}
	if f.ended != 0 {
		return s + fmt.Sprintf(", ended by the daemon after %v (%v)", f.ended.Round(100*time.Millisecond), f.err)
	}
	return s + ", still open"
}

// crowdFates sums up the fates of many like connections.
func crowdFates(fates []*fate) string {
	open, ended := 0, 0
	lasts := map[string]int{}
	var first, latest time.Duration
	for _, f := range fates {
		f.mu.Lock()
		if f.ended == 0 {
			open++
		} else {
			ended++
			if first == 0 || f.ended < first {
				first = f.ended
			}
			latest = max(latest, f.ended)
		}
		if f.n > 0 {
			lasts[f.last]++
		}
		f.mu.Unlock()
	}
	s := fmt.Sprintf("%d open, %d ended by the daemon", open, ended)
	if ended > 0 {
		s += fmt.Sprintf(" (from %v to %v)", first.Round(100*time.Millisecond), latest.Round(100*time.Millisecond))
	}
	return s + fmt.Sprintf("; last replies %v", lasts)
}

// onlyTemporary fails the test if an abuser was told anything but a 4xx
// (the 421 that ends a connection a daemon gives up on), or one of the
// codes also allowed (the greeting, for connections that read it).
func onlyTemporary(t *testing.T, fates []*fate, also ...string) {
	t.Helper()
	bad := 0
	for i, f := range fates {
		f.mu.Lock()
		for code := range f.codes {
			if code[0] != '4' && !slices.Contains(also, code) {
				if bad++; bad <= 3 {
					t.Errorf("abuser %d: reply %s, want none or a 4xx: %q … %q", i, code, f.first, f.last)
				}
				break
			}
		}
		f.mu.Unlock()
	}
	if bad > 3 {
		t.Errorf("and %d abusers more", bad-3)
	}
}

// dribble writes text to conn one byte each interval, from now, until it
// is written, the connection fails or the test ends. It returns at once;
// sent counts the bytes written.
func (c *crowd) dribble(conn net.Conn, text string, interval time.Duration, sent *atomic.Int64) {
	c.run(func() {
		for i := range len(text) {
			if _, err := conn.Write([]byte{text[i]}); err != nil {
				return
			}
			sent.Add(1)
			if !c.sleep(interval) {
				return
			}
		}
	})
}

// vmHWM returns the daemon's peak resident memory in kB.
func vmHWM(t *testing.T, d *daemon) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.Cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatalf("VmHWM: %q", line)
			}
			return kb
		}
	}
	t.Fatalf("no VmHWM in %s", b)
	return 0
}

func logHWM(t *testing.T, d *daemon) int {
	t.Helper()
	kb := vmHWM(t, d)
	t.Logf("daemon VmHWM %.1f MiB", float64(kb)/1024)
	return kb
}

// raiseFileLimit makes sure the test process may open need descriptors,
// raising its soft limit to the hard one if it must; a hard limit below
// need skips the test.
func raiseFileLimit(t *testing.T, need uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= need {
		return
	}
	if lim.Max < need {
		t.Skipf("needs %d file descriptors, the hard limit is %d", need, lim.Max)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
}

// fileLimits says what the test process and the daemon may open, and what
// they have open.
func fileLimits(t *testing.T, d *daemon) string {
	t.Helper()
	var lim syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	self, _ := os.ReadDir("/proc/self/fd")
	pid := d.Cmd.Process.Pid
	theirs, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	limits, _ := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	var daemonLimit string
	for line := range strings.Lines(string(limits)) {
		if strings.HasPrefix(line, "Max open files") {
			daemonLimit = strings.Join(strings.Fields(line)[3:5], "/")
		}
	}
	return fmt.Sprintf("test process: %d descriptors open, limit %d/%d; daemon: %d open, limit %s (soft/hard)",
		len(self), lim.Cur, lim.Max, len(theirs), daemonLimit)
}

// TestHostileIdleConnections: 2,000 connections that read the greeting and
// say nothing must not keep a good client from being served: it is served
// within goodClientDeadline, however long the daemon lets an idle
// connection wait for its next command.
func TestHostileIdleConnections(t *testing.T) {
	const idle = 2000
	raiseFileLimit(t, 2*idle+200) // the abusers, and the daemon's ends if it accepts them all
	sink := newSink(t, smtpdtest.Accept)
	d := startDaemon(t, "outgoing", sink.Port, noRateLimit...)
	msg := goodMessage(t)
	c := newCrowd(t)

	fates := make([]*fate, idle)
	for i := range fates {
		conn, err := c.dial(d.addr())
		if err != nil {
			t.Fatalf("idle connection %d: %v", i, err)
		}
		fates[i] = c.watch(conn)
	}
	greeted := func() int {
		n := 0
		for _, f := range fates {
			if f.mu.Lock(); f.codes["220"] > 0 {
				n++
			}
			f.mu.Unlock()
		}
		return n
	}
	// The abuse is in full swing once the daemon greets no more of them.
	for n, deadline := greeted(), time.Now().Add(20*time.Second); n < idle && time.Now().Before(deadline); {
		time.Sleep(time.Second)
		m := greeted()
		if m == n {
			break
		}
		n = m
	}
	t.Logf("%d idle connections, %d greeted after %v; %s", idle, greeted(), c.since(), fileLimits(t, d))

	wantServed(t, d, sink, alice, msg, false)

	t.Logf("idle connections: %d greeted; %s", greeted(), crowdFates(fates))
	t.Log(fileLimits(t, d))
	logHWM(t, d)
	onlyTemporary(t, fates, "220")
}

// slowloris opens n connections that each get their transaction going
// with setup (command, wanted reply, …) and then write text a byte a
// second. The good client is served meanwhile; the abusers are watched
// for 10 s.
func slowloris(t *testing.T, n int, text string, setup ...string) {
	sink := newSink(t, smtpdtest.Accept)
	d := startDaemon(t, "outgoing", sink.Port, noRateLimit...)
	msg := goodMessage(t)
	c := newCrowd(t)

	fates := make([]*fate, n)
	var sent atomic.Int64
	for i := range fates {
		cl := c.dialSMTP(t, d, setup...)
		fates[i] = c.watch(cl.Text.R)
		c.dribble(cl.Conn, text, time.Second, &sent)
	}
	time.Sleep(time.Second)
	wantServed(t, d, sink, alice, msg, false)

	c.sleep(10*time.Second - time.Since(c.start))
	t.Logf("%d slow clients after %v, %d bytes sent: %s", n, c.since(), sent.Load(), crowdFates(fates))
	logHWM(t, d)
	onlyTemporary(t, fates)
}

// TestHostileSlowCommands: 50 connections each send a command a byte a
// second.
func TestHostileSlowCommands(t *testing.T) {
	slowloris(t, 50, "MAIL FROM:<"+alice+">\r\n")
}

// TestHostileSlowData: 50 connections each send their message a byte a
// second.
func TestHostileSlowData(t *testing.T) {
	slowloris(t, 50, string(filtertest.Plain(alice, bob, "slow", "This message comes a byte a second.")),
		"MAIL FROM:<"+alice+">", "250", "RCPT TO:<"+bob+">", "250", "DATA", "354")
}

// TestHostileLongCommandLine: a command line of 10 MB without a line end
// gets 500.
func TestHostileLongCommandLine(t *testing.T) {
	sink := newSink(t, smtpdtest.Accept)
	d := startDaemon(t, "outgoing", sink.Port, noRateLimit...)
	msg := goodMessage(t)
	c := newCrowd(t)

	cl := c.dialSMTP(t, d)
	f := c.watch(cl.Text.R)
	var sent atomic.Int64
	writeErr := make(chan error, 1)
	c.run(func() {
		chunk := bytes.Repeat([]byte("A"), 64<<10)
		copy(chunk, "MAIL FROM:<")
		for sent.Load() < 10<<20 {
			n, err := cl.Conn.Write(chunk)
			sent.Add(int64(n))
			if err != nil {
				writeErr <- err
				return
			}
			chunk = bytes.Repeat([]byte("A"), 64<<10)
		}
		writeErr <- nil
	})
	for deadline := time.Now().Add(10 * time.Second); sent.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	wantServed(t, d, sink, alice, msg, false)

	if !f.wait(1, 30*time.Second) {
		t.Errorf("no reply to the long line after %v", c.since())
	}
	if f.mu.Lock(); f.n == 0 || !strings.HasPrefix(f.first[0], "500") {
		t.Errorf("long line: replies %q, want 500", f.first)
	}
	f.mu.Unlock()
	var werr error
	select {
	case werr = <-writeErr:
	case <-time.After(30 * time.Second):
		werr = fmt.Errorf("still writing after %v", c.since())
	}
	f.wait(2, 5*time.Second) // the connection's end, if the daemon ends it
	t.Logf("abuser wrote %d bytes (%v): %v", sent.Load(), werr, f)
	logHWM(t, d)
}

// TestHostileManyRecipients: 10,000 RCPT TO in one transaction; the
// first 1,000 are taken, the others get 452, and the message goes to
// the 1,000.
func TestHostileManyRecipients(t *testing.T) {
	const rcpts, limit = 10_000, 1000
	sink := newSink(t, smtpdtest.Accept)
	d := startDaemon(t, "outgoing", sink.Port, noRateLimit...)
	msg := goodMessage(t)
	c := newCrowd(t)

	cl := c.dialSMTP(t, d, "MAIL FROM:<"+alice+">", "250")
	// Read the replies in a goroutine while the commands go out, so that
	// neither side blocks the other.
	f := c.watch(cl.Text.R)
	c.run(func() {
		var b bytes.Buffer
		for i := range rcpts {
			fmt.Fprintf(&b, "RCPT TO:<r%05d@example.net>\r\n", i)
			if (i+1)%500 == 0 {
				if _, err := cl.Conn.Write(b.Bytes()); err != nil {
					return
				}
				b.Reset()
			}
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if n, _ := f.replies(); n > 0 || time.Now().After(deadline) {
			break
		}
	}
	wantServed(t, d, sink, alice, msg, false)

	if !f.wait(rcpts, 60*time.Second) {
		t.Fatalf("%d recipients: after %v only %v", rcpts, c.since(), f)
	}
	f.mu.Lock()
	codes, first452, n := f.codes, f.firstAt["452"], f.n
	f.mu.Unlock()
	t.Logf("%d RCPT after %v: %v; the first 452 is recipient %d", rcpts, c.since(), f, first452+1)
	if n != rcpts || codes["250"] != limit || codes["452"] != rcpts-limit || first452 != limit {
		t.Fatalf("replies %v, want %d × 250 and then %d × 452", codes, limit, rcpts-limit)
	}
	// The transaction goes on with the recipients taken.
	abuse := filtertest.Encrypted(alice, bob, filtertest.GoCryptoV6(t, []byte("to many")))
	if _, err := fmt.Fprintf(cl.Conn, "DATA\r\n"); err != nil {
		t.Fatal(err)
	}
	f.wait(rcpts+1, 30*time.Second)
	if f.mu.Lock(); !strings.HasPrefix(f.last, "354") {
		t.Errorf("DATA: reply %q", f.last)
	}
	f.mu.Unlock()
	w := cl.Text.DotWriter()
	w.Write(abuse)
	w.Close()
	f.wait(rcpts+2, 60*time.Second)
	if f.mu.Lock(); !strings.HasPrefix(f.last, "250") {
		t.Errorf("end of data: reply %q", f.last)
	}
	f.mu.Unlock()
	for _, m := range sink.Messages() {
		if bytes.Equal(m.Data, abuse) && len(m.To) != limit {
			t.Errorf("sink got the message for %d recipients, want %d", len(m.To), limit)
		}
	}
	logHWM(t, d)
}

// TestHostileManySenders: 100,000 distinct senders of the relay's domain
// on one connection (MAIL, RSET, pipelined), under the default rate
// limit. The daemon's memory stays modest, and good senders are served
// without a 450 during the abuse and after it: alice, who sends while it
// runs, and dave, whom the daemon has not seen before.
func TestHostileManySenders(t *testing.T) {
	const senders, batch = 100_000, 1000
	const dave = "dave@chat.example.org"
	sink := newSink(t, smtpdtest.Accept)
	d := startDaemon(t, "outgoing", sink.Port)
	msg := goodMessage(t)
	afterMsg := filtertest.Encrypted(alice, bob, filtertest.GoCryptoV6(t, []byte("after the crowd")))
	daveMsg := filtertest.Encrypted(dave, bob, filtertest.GoCryptoV6(t, []byte("a new sender")))
	c := newCrowd(t)

	cl := c.dialSMTP(t, d)
	f := c.watch(cl.Text.R)
	c.run(func() {
		var b bytes.Buffer
		for i := range senders {
			fmt.Fprintf(&b, "MAIL FROM:<s%06d@chat.example.org>\r\nRSET\r\n", i)
			if (i+1)%batch == 0 {
				if _, err := cl.Conn.Write(b.Bytes()); err != nil {
					return
				}
				b.Reset()
			}
		}
	})
	// The good client once half of the senders are answered (MAIL and
	// RSET: a reply each).
	if !f.wait(senders, 60*time.Second) {
		t.Fatalf("after %v only %v", c.since(), f)
	}
	wantServed(t, d, sink, alice, msg, false)
	if !f.wait(2*senders, 90*time.Second) {
		t.Fatalf("%d senders: after %v only %v", senders, c.since(), f)
	}
	t.Logf("%d senders, MAIL and RSET, answered after %v: %v", senders, c.since(), f)
	f.mu.Lock()
	if f.codes["250"]+f.codes["450"] != 2*senders || f.codes["250"] < senders {
		t.Errorf("the abuser's MAIL and RSET got %v, want 250, or 450 (the rate) to MAIL", f.codes)
	}
	f.mu.Unlock()

	wantServed(t, d, sink, alice, afterMsg, false)
	if r := wantServed(t, d, sink, dave, daveMsg, true); r.lockedOut > 0 {
		t.Errorf("after the abuse, %s (a sender new to the daemon) was refused %q for %v before the message was taken", dave, r.refusal, r.lockedOut.Round(time.Millisecond))
	}
	if kb := logHWM(t, d); kb > 200<<10 {
		t.Errorf("daemon VmHWM %d kB, want at most 200 MiB", kb)
	}
}

// sendAbusive starts a transaction from alice on a connection of the crowd
// and writes body (with its end-of-data line) in a goroutine; the fate
// sees the reply.
func sendAbusive(t *testing.T, c *crowd, d *daemon, body []byte) *fate {
	t.Helper()
	cl := c.dialSMTP(t, d, "MAIL FROM:<"+alice+">", "250", "RCPT TO:<"+bob+">", "250", "DATA", "354")
	f := c.watch(cl.Text.R)
	c.run(func() {
		if _, err := cl.Conn.Write(body); err == nil {
			cl.Conn.Write([]byte(".\r\n"))
		}
	})
	return f
}

// wantRefusedQuickly runs the good client while the abusive message goes
// in and then wants the abuser's reply to be a refusal within a minute.
func wantRefusedQuickly(t *testing.T, what string, body []byte, extra ...string) {
	sink := newSink(t, smtpdtest.Accept)
	d := startDaemon(t, "outgoing", sink.Port, append(noRateLimit, extra...)...)
	msg := goodMessage(t)
	c := newCrowd(t)

	f := sendAbusive(t, c, d, body)
	wantServed(t, d, sink, alice, msg, false)
	if !f.wait(1, 60*time.Second) {
		t.Fatalf("%s: no reply after %v", what, c.since())
	}
	t.Logf("%s (%d bytes): %v; answered %v after the test started", what, len(body), f, c.since())
	if f.mu.Lock(); f.n == 0 || !strings.HasPrefix(f.first[0], "5") {
		t.Errorf("%s: replies %q, want a 5xx", what, f.first)
	}
	f.mu.Unlock()
	logHWM(t, d)
}

// TestHostileNestedMultipart: a message whose parts nest 10,000 deep.
func TestHostileNestedMultipart(t *testing.T) {
	const depth = 10_000
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\nSubject: deep\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"b0\"\r\n\r\n", alice, bob)
	for i := 1; i < depth; i++ {
		fmt.Fprintf(&b, "--b%d\r\nContent-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n", i-1, i)
	}
	fmt.Fprintf(&b, "--b%d\r\nContent-Type: text/plain\r\n\r\nthe bottom\r\n", depth-1)
	for i := depth - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "--b%d--\r\n", i)
	}
	wantRefusedQuickly(t, fmt.Sprintf("%d nested multiparts", depth), b.Bytes())
}

// TestHostileManyParts: a message of 100,000 parts.
func TestHostileManyParts(t *testing.T) {
	const parts = 100_000
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\nSubject: many\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"b\"\r\n\r\n", alice, bob)
	b.WriteString("--b\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n")
	for range parts - 1 {
		b.WriteString("--b\r\n\r\nx\r\n")
	}
	b.WriteString("--b--\r\n")
	wantRefusedQuickly(t, fmt.Sprintf("%d parts", parts), b.Bytes())
}

// TestHostileLongPartHeader: a header line of 25 MB inside a MIME part.
func TestHostileLongPartHeader(t *testing.T) {
	const long = 25 << 20
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\nSubject: long\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"b\"\r\n\r\n", alice, bob)
	b.WriteString("--b\r\nX-Long: ")
	b.Write(bytes.Repeat([]byte("x"), long))
	b.WriteString("\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n--b--\r\n")
	wantRefusedQuickly(t, "a 25 MB header line in a part", b.Bytes())
}

// TestHostileTinyWrites: a client writes its 5 MB message a byte a write,
// with TCP_NODELAY, for 3 s, then the rest at once.
func TestHostileTinyWrites(t *testing.T) {
	sink := newSink(t, smtpdtest.Accept)
	d := startDaemon(t, "outgoing", sink.Port, noRateLimit...)
	msg := goodMessage(t)
	c := newCrowd(t)

	line := strings.Repeat("flood ", 12) + "\n"
	body := filtertest.Plain(alice, bob, "flood", strings.Repeat(line, 5<<20/len(line)))
	cl := c.dialSMTP(t, d, "MAIL FROM:<"+alice+">", "250", "RCPT TO:<"+bob+">", "250", "DATA", "354")
	if err := cl.Conn.(*net.TCPConn).SetNoDelay(true); err != nil {
		t.Fatal(err)
	}
	f := c.watch(cl.Text.R)
	var tiny atomic.Int64
	done := make(chan struct{})
	c.run(func() {
		defer close(done)
		for end := time.Now().Add(3 * time.Second); time.Now().Before(end) && tiny.Load() < int64(len(body)); {
			if _, err := cl.Conn.Write(body[tiny.Load() : tiny.Load()+1]); err != nil {
				return
			}
			tiny.Add(1)
		}
		if _, err := cl.Conn.Write(body[tiny.Load():]); err == nil {
			cl.Conn.Write([]byte(".\r\n"))
		}
	})
	time.Sleep(time.Second)
	wantServed(t, d, sink, alice, msg, false)
	if !f.wait(1, 60*time.Second) {
		t.Fatalf("no reply to the flood after %v; %d bytes written a byte a write", c.since(), tiny.Load())
	}
	<-done
	t.Logf("%d of %d bytes written a byte a write, then the rest: %v; answered %v after the test started", tiny.Load(), len(body), f, c.since())
	if f.mu.Lock(); f.n == 0 || !strings.HasPrefix(f.first[0], "523") && !strings.HasPrefix(f.first[0], "4") {
		t.Errorf("flood: replies %q, want 523 (the message is not encrypted) or a 4xx", f.first)
	}
	f.mu.Unlock()
	logHWM(t, d)
}

// TestHostileNoopFlood: a client pipelines 100,000 NOOPs and reads no
// reply; only after the good client was served does it read them.
func TestHostileNoopFlood(t *testing.T) {
	const noops = 100_000
	sink := newSink(t, smtpdtest.Accept)
	d := startDaemon(t, "outgoing", sink.Port, noRateLimit...)
	msg := goodMessage(t)
	c := newCrowd(t)

	cl := c.dialSMTP(t, d)
	var sent atomic.Int64
	c.run(func() {
		chunk := bytes.Repeat([]byte("NOOP\r\n"), 1000)
		for sent.Load() < noops {
			if _, err := cl.Conn.Write(chunk); err != nil {
				return
			}
			sent.Add(1000)
		}
	})
	time.Sleep(2 * time.Second)
	stalled := sent.Load()
	wantServed(t, d, sink, alice, msg, false)
	time.Sleep(time.Second)
	t.Logf("%d NOOPs written after %v without reading (%d before the good client)", sent.Load(), c.since(), stalled)

	f := c.watch(cl.Text.R)
	if !f.wait(noops, 60*time.Second) {
		t.Errorf("after %v, %d NOOPs written: %v", c.since(), sent.Load(), f)
	}
	t.Logf("reading from %v on: %v", c.since(), f)
	f.mu.Lock()
	for code := range f.codes {
		if code != "250" && code != "421" {
			t.Errorf("NOOP flood: replies %v, want 250 or a 421 that ends it", f.codes)
		}
	}
	f.mu.Unlock()
	logHWM(t, d)
}
