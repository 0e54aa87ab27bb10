package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"filtermail/filter/filtertest"
)

// pathLoad is a load of BenchmarkFilterPath: n messages of about size
// bytes each, over conns connections at once, each connection sending its
// share one message after the other.
type pathLoad struct {
	name  string
	size  int
	conns int
	n     int // messages of a round, per b.N
}

// The loads of BenchmarkFilterPath. Each runs eight rounds; the whole
// benchmark takes about three minutes on 2 cores.
var pathLoads = []pathLoad{
	{"6.6KB", 6600, 16, 4000},
	{"1MB", 1_000_000, 8, 400},
	{"7MB", 7_000_000, 8, 64},
}

// plainService is the benchmark's submission service without filtermail.
const plainService = "plain submission"

// pathWaitLimit bounds how long a round's messages may take to reach the
// sink once released.
const pathWaitLimit = 3 * time.Minute

// BenchmarkFilterPath measures what filtermail costs a relay's
// submission: how long clients wait for their 250 with and without it,
// through one Postfix instance wired as README.md's master.cf. Encrypted
// messages (go-crypto, v6 key, SEIPD v2, random payload) from alice to
// bob on the internet (the relay's sink) are sent over several
// connections at once, each connection reused for its share:
//
//   - postfix: to a copy of the submission service on another port,
//     without smtpd_proxy_filter: smtpd writes the message to the queue
//     through cleanup, as a relay without filtermail would. (The
//     reinjection service is such an smtpd too, but the copy keeps the
//     submission's own options: the filter is the only difference.)
//   - filtermail: to the submission service, whose smtpd passes each
//     transaction to filtermail's outgoing filter, which streams it into
//     the reinjection smtpd (10025) and commits it once it passed.
//   - sink: straight to the reinjection smtpd, the next hop filtermail
//     hands mail to.
//   - direct: to filtermail's outgoing filter itself (10080), as
//     Postfix's smtpd would pass it on, with the reinjection smtpd
//     behind it: the daemon between a load generator and its sink.
//
// The first pair says what a relay's submission pays for the filter
// (ratio); the second what filtermail costs against its sink alone
// (sink-ratio).
//
// Both smtpd services that queue (the plain one and the reinjection one)
// put what they take on hold, so that the time measured is the
// submission's only: Postfix's delivery to the sink, and the sink, do
// not compete for the processors while clients wait. After each round
// the messages are released and must all reach the sink, each once,
// body unchanged, before the next round starts. The rounds go postfix,
// filtermail, filtermail, postfix, sink, direct, direct, sink, after a
// warm-up of each.
//
//	flock /tmp/filtermail-integration.lock go test -run '^$' -bench BenchmarkFilterPath -benchtime=1x ./integration/
//
// Each load logs one line; the rounds' details go to the standard
// output: CPU time a message of Postfix (by service: the smtpd processes
// of each service, cleanup, the rest), of filtermail and of the
// benchmark itself, and filtermail's read and write system calls.
// filtermail's peak RSS is VmHWM, reset before each round through it.
func BenchmarkFilterPath(b *testing.B) {
	r := startRelayServices(b, plainServices,
		"max_user_send_per_minute = 1000000", "max_user_send_burst_size = 1000000")
	pb := &pathBench{relay: r, queue: &benchPostfix{postfix: r.postfix, daemon: r.outgoing}}
	pb.master = pb.masterPID(b)
	plain := pathSide{name: "postfix", addr: r.Addr(plainService)}
	filtered := pathSide{name: "filtermail", addr: r.submission, filtermail: true}
	sink := pathSide{name: "sink", addr: r.Addr(reinjectService)}
	direct := pathSide{name: "direct", addr: net.JoinHostPort(r.Host, "10080"), filtermail: true}

	warm := pathLoad{name: "warm-up", size: 6600, conns: 16, n: 64}
	for _, side := range []pathSide{plain, filtered, sink, direct} {
		pb.round(b, warm, side, newPathMessage(b, warm.size), "warm-"+side.name)
	}
	for _, l := range pathLoads {
		b.Run(l.name, func(sb *testing.B) {
			// The instance's helpers fail the load that runs.
			r.t = sb
			defer func() { r.t = b }()
			msg := newPathMessage(sb, l.size)
			l := l
			l.n *= sb.N
			took := map[string]time.Duration{}
			var hwm int64
			for i, side := range []pathSide{plain, filtered, filtered, plain, sink, direct, direct, sink} {
				res := pb.round(sb, l, side, msg, fmt.Sprintf("%s-%d", l.name, i+1))
				took[side.name] += res.took
				hwm = max(hwm, res.hwm)
			}
			n, size := float64(2*l.n), float64(len(msg.data))
			rate := func(side pathSide) float64 { return n / took[side.name].Seconds() }
			pf, fm, sk, dr := rate(plain), rate(filtered), rate(sink), rate(direct)
			ratio, sinkRatio, rss := fm/pf, dr/sk, float64(hwm)/(1<<20)
			sb.ReportMetric(pf, "postfix-msg/s")
			sb.ReportMetric(fm, "filtermail-msg/s")
			sb.ReportMetric(ratio, "ratio")
			sb.ReportMetric(sk, "sink-msg/s")
			sb.ReportMetric(dr, "direct-msg/s")
			sb.ReportMetric(dr*size/1e6, "direct-MB/s")
			sb.ReportMetric(sinkRatio, "sink-ratio")
			sb.ReportMetric(rss, "peak-RSS-MiB")
			sb.ReportMetric(0, "ns/op")
			sb.Logf("%s: %d messages of %d bytes over %d connections, twice each way: submission: Postfix alone %.1f msg/s (%.1f MB/s), "+
				"through filtermail %.1f msg/s (%.1f MB/s), ratio %.2f; straight to the reinjection smtpd %.1f msg/s (%.1f MB/s), "+
				"through filtermail to it %.1f msg/s (%.1f MB/s), ratio %.2f; filtermail's peak RSS %.1f MiB",
				l.name, l.n, len(msg.data), l.conns, pf, pf*size/1e6, fm, fm*size/1e6, ratio,
				sk, sk*size/1e6, dr, dr*size/1e6, sinkRatio, rss)
		})
	}
}

// plainServices adds to README.md's services the benchmark's plain
// submission service, a copy of the submission service on port 10587
// without its proxy filter, and puts on hold what it and the outgoing
// reinjection service take.
func plainServices(services []service) []service {
	hold := "smtpd_recipient_restrictions=check_recipient_access,static:HOLD"
	for i, s := range services {
		switch s.Name {
		case "submission":
			host, _, _ := net.SplitHostPort(s.Addr)
			plain := service{Name: plainService, Addr: net.JoinHostPort(host, "10587")}
			for j, line := range strings.SplitAfter(s.Entry, "\n") {
				if j == 0 {
					_, rest, _ := strings.Cut(line, " ")
					line = plain.Addr + " " + rest
				}
				if !strings.Contains(line, "smtpd_proxy_filter=") {
					plain.Entry += line
				}
			}
			services = append(services, withOptions(plain, hold))
		case reinjectService:
			services[i] = withOptions(s, hold)
		}
	}
	return services
}

// pathSide is where a round sends its messages.
type pathSide struct {
	name       string
	addr       string
	filtermail bool // the path through filtermail: its peak RSS is of interest
}

// pathBench is the relay of BenchmarkFilterPath.
type pathBench struct {
	relay  *relay
	queue  *benchPostfix // the relay's instance, for its queue and CPU times
	master int           // the instance's master process
}

// masterPID returns the process ID of the instance's master.
func (pb *pathBench) masterPID(tb testing.TB) int {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(pb.relay.dir, "queue", "pid", "master.pid"))
	if err != nil {
		tb.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		tb.Fatalf("master.pid: %v", err)
	}
	return pid
}

// postfixCPU is the CPU time a Postfix instance has used so far.
type postfixCPU struct {
	// master is the master's own, and that of its children that have
	// ended (the master waits for them).
	master time.Duration
	procs  map[int]postfixProc // the master's children that run, by pid
}

// postfixProc is a process of a Postfix instance.
type postfixProc struct {
	service string // the master.cf service it serves, without the host
	cpu     time.Duration
}

// postfixCPU returns the CPU time the instance has used so far.
func (pb *pathBench) postfixCPU() postfixCPU {
	own, ended := procCPU(pb.master)
	c := postfixCPU{master: own + ended, procs: map[int]postfixProc{}}
	for _, pid := range (&reinjection{master: pb.master}).children() {
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		// The master starts each with -n and the service's name.
		args := strings.Split(string(cmdline), "\x00")
		service := filepath.Base(args[0])
		if i := slices.Index(args, "-n"); i >= 0 && i+1 < len(args) {
			service = args[i+1][strings.LastIndexByte(args[i+1], ':')+1:]
		}
		cpu, _ := procCPU(pid)
		c.procs[pid] = postfixProc{service: service, cpu: cpu}
	}
	return c
}

// total is all the CPU time c counts.
func (c postfixCPU) total() time.Duration {
	t := c.master
	for _, p := range c.procs {
		t += p.cpu
	}
	return t
}

// since returns the CPU time used after before, by service; under ""
// that of the master and of the processes that ended in between.
func (c postfixCPU) since(before postfixCPU) map[string]time.Duration {
	by := map[string]time.Duration{"": c.master - before.master}
	for pid, p := range before.procs {
		if _, ok := c.procs[pid]; !ok {
			by[""] -= p.cpu
		}
	}
	for pid, p := range c.procs {
		by[p.service] += p.cpu - before.procs[pid].cpu
	}
	return by
}

// procCPU returns the CPU time process pid has used, and that of its
// children that have ended and that it waited for.
func procCPU(pid int) (own, children time.Duration) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0
	}
	// After "pid (comm) ": utime, stime, cutime and cstime are fields
	// 14 to 17.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 15 {
		return 0, 0
	}
	var t [4]int64
	for i := range t {
		t[i], _ = strconv.ParseInt(f[11+i], 10, 64)
	}
	return time.Duration(t[0]+t[1]) * time.Second / benchClockTicks, time.Duration(t[2]+t[3]) * time.Second / benchClockTicks
}

// byService shows Postfix's CPU time of a round of n messages, by
// service, in ms a message.
func byService(by map[string]time.Duration, n int) string {
	ms := func(d time.Duration) float64 { return d.Seconds() * 1000 / float64(n) }
	var parts []string
	for _, s := range postfixServices {
		if d := by[s.service]; d > 0 {
			parts = append(parts, fmt.Sprintf("%s %.2f", s.name, ms(d)))
		}
		delete(by, s.service)
	}
	other := time.Duration(0)
	for _, d := range by {
		other += d
	}
	return strings.Join(append(parts, fmt.Sprintf("other %.2f", ms(other))), ", ")
}

// procSyscalls returns how many read and write system calls process pid
// has made (syscr and syscw of /proc/PID/io).
func procSyscalls(pid int) (calls [2]int64) {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	for line := range strings.Lines(string(b)) {
		name, v, _ := strings.Cut(strings.TrimSpace(line), ": ")
		n, _ := strconv.ParseInt(v, 10, 64)
		switch name {
		case "syscr":
			calls[0] = n
		case "syscw":
			calls[1] = n
		}
	}
	return calls
}

// postfixServices names the services whose CPU time a round shows on its
// own, by their name in master.cf without the host; the others count as
// "other".
var postfixServices = []struct{ service, name string }{
	{"submission", "submission smtpd"},
	{"10587", "plain smtpd"},
	{"10025", "reinjection smtpd"},
	{"cleanup", "cleanup"},
}

// pathMessage is the message of a load, made once: each round sends it
// with a Message-ID of each message's own in front.
type pathMessage struct {
	data    []byte // the message as sent, but for the Message-ID
	stuffed []byte // data dot-stuffed, with the end-of-data line
	body    []byte // what follows data's header
}

// newPathMessage makes an encrypted message from alice to bob of about
// size bytes, with a random payload.
func newPathMessage(tb testing.TB, size int) pathMessage {
	tb.Helper()
	msg := filtertest.EncryptedOfSize(tb, alice, bob, size)
	_, body, ok := bytes.Cut(msg, []byte("\r\n\r\n"))
	if !ok {
		tb.Fatal("the message has no body")
	}
	return pathMessage{data: msg, stuffed: append(dotStuff(msg), ".\r\n"...), body: body}
}

// pathRound is what one round took.
type pathRound struct {
	took time.Duration
	hwm  int64 // filtermail's peak RSS during a round through it, bytes
}

// round sends l.n copies of msg, each with a Message-ID of its own made
// from tag, to side over l.conns connections at once, and returns the
// time from the first MAIL to the last reply. Every reply must be the
// one expected. Then every message must be on hold; they are released
// and must each reach the sink once with their body unchanged, and the
// queue must end empty.
func (pb *pathBench) round(b *testing.B, l pathLoad, side pathSide, msg pathMessage, tag string) pathRound {
	b.Helper()
	r := pb.relay
	ids := make([][]byte, l.n)
	for i := range ids {
		ids[i] = fmt.Appendf(nil, "Message-ID: <%s-%d@bench.%s>\r\n", tag, i, domain)
	}
	clients := make([]*client, l.conns)
	for i := range clients {
		c, err := dialClient(context.Background(), side.addr, time.Now().Add(10*time.Minute))
		if err != nil {
			b.Fatalf("%s: %v", side.name, err)
		}
		clients[i] = c
		b.Cleanup(c.close)
	}
	sunk, held := len(r.sink.Messages()), pb.queue.queued()
	pid := r.outgoing.Cmd.Process.Pid
	if side.filtermail {
		// Writing 5 to clear_refs resets VmHWM to the current RSS.
		if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
			b.Fatalf("resetting filtermail's VmHWM: %v", err)
		}
	}
	cpu, pfCPU, calls := pb.queue.cpu(), pb.postfixCPU(), procSyscalls(pid)

	errs := make([]error, l.conns)
	var wg sync.WaitGroup
	start := time.Now()
	for i, c := range clients {
		wg.Go(func() {
			for j := i; j < l.n; j += l.conns {
				if errs[i] = sendPath(c, ids[j], msg.stuffed); errs[i] != nil {
					errs[i] = fmt.Errorf("%s: message %d: %w", side.name, j, errs[i])
					return
				}
			}
		})
	}
	wg.Wait()
	res := pathRound{took: time.Since(start)}
	pfAfter := pb.postfixCPU()
	used, pfBy := pb.queue.cpu().since(cpu), pfAfter.since(pfCPU)
	callsAfter := procSyscalls(pid)
	if side.filtermail {
		_, res.hwm = benchProcStatus(pid)
	}
	if err := errors.Join(errs...); err != nil {
		b.Fatal(err)
	}
	for _, c := range clients {
		c.cmd("QUIT")
		c.close()
	}

	n := float64(l.n)
	ms := func(d time.Duration) float64 { return d.Seconds() * 1000 / n }
	fmt.Printf("%s: %-10s %d messages of %d bytes: %7v, %7.1f msg/s, %6.1f MB/s; CPU ms a message: Postfix %.2f (%s), filtermail %.2f, benchmark %.2f (machine %.0f%% busy)",
		l.name, side.name, l.n, len(msg.data), res.took.Round(time.Millisecond), n/res.took.Seconds(),
		n*float64(len(msg.data))/1e6/res.took.Seconds(), ms(pfAfter.total()-pfCPU.total()), byService(pfBy, l.n), ms(used.transport), ms(used.test),
		100*used.machine.Seconds()/res.took.Seconds()/float64(benchCPUs()))
	if side.filtermail {
		fmt.Printf("; filtermail's peak RSS %.1f MiB, system calls a message: %.0f reads, %.0f writes", float64(res.hwm)/(1<<20),
			float64(callsAfter[0]-calls[0])/n, float64(callsAfter[1]-calls[1])/n)
	}
	fmt.Println()

	if got := pb.queue.queued(); got != held+l.n {
		b.Fatalf("%s: %d messages queued after the round, want %d", side.name, got, held+l.n)
	}
	pb.queue.release()
	for deadline := time.Now().Add(pathWaitLimit); len(r.sink.Messages()) < sunk+l.n; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatalf("%s: %d of %d messages reached the sink within %v", side.name, len(r.sink.Messages())-sunk, l.n, pathWaitLimit)
		}
	}
	r.waitQueueEmpty()
	if got := len(r.sink.Messages()); got != sunk+l.n {
		b.Fatalf("%s: %d messages reached the sink, want %d", side.name, got-sunk, l.n)
	}
	for i, k := range pb.arrivals(sunk, tag, msg.body, l.n) {
		if k != 1 {
			b.Fatalf("%s: message %d reached the sink %d times", side.name, i, k)
		}
	}
	if k := strings.Count(r.Log(), "status=bounced"); k > 0 {
		b.Fatalf("%d messages bounced", k)
	}
	return res
}

// arrivals returns how often each of the n messages of the round tag
// has reached the sink among the messages after its first sunk ones; a
// message whose body changed on the way fails the benchmark.
func (pb *pathBench) arrivals(sunk int, tag string, body []byte, n int) []int {
	counts := make([]int, n)
	prefix := "<" + tag + "-"
	for _, m := range pb.relay.sink.Messages()[sunk:] {
		id, ok := strings.CutPrefix(benchMessageID(m.Data), prefix)
		i, err := strconv.Atoi(strings.TrimSuffix(id, "@bench."+domain+">"))
		if !ok || err != nil || i < 0 || i >= n {
			pb.relay.t.Fatalf("the sink got a message with Message-ID %s", benchMessageID(m.Data))
		}
		if !bytes.HasSuffix(m.Data, body) {
			pb.relay.t.Fatalf("message %s%s reached the sink with its body changed", prefix, id)
		}
		counts[i]++
	}
	return counts
}

// sendPath sends one message over c: MAIL, RCPT, DATA, then the header
// line id and the dot-stuffed message in one write.
func sendPath(c *client, id, stuffed []byte) error {
	for _, step := range []struct {
		line string
		want string
	}{{"MAIL FROM:<" + alice + ">", "250"}, {"RCPT TO:<" + bob + ">", "250"}, {"DATA", "354"}} {
		reply, err := c.cmd(step.line)
		if err != nil {
			return fmt.Errorf("%s: %w", step.line, err)
		}
		if !strings.HasPrefix(reply, step.want) {
			return fmt.Errorf("%s: %q", step.line, reply)
		}
	}
	bufs := net.Buffers{id, stuffed}
	if _, err := bufs.WriteTo(c.conn); err != nil {
		return err
	}
	reply, err := c.reply()
	if err != nil {
		return fmt.Errorf("end of data: %w", err)
	}
	if !strings.HasPrefix(reply, "250") {
		return fmt.Errorf("end of data: %q", reply)
	}
	return nil
}
