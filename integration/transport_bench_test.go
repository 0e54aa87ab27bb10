package integration

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"filtermail/filter/filtertest"
	"filtermail/internal/daemontest"
	"filtermail/internal/dnstest"
	"filtermail/internal/relaytest"
	"filtermail/internal/testnet"
)

// The loads of BenchmarkTransport.
const (
	benchDomains      = 10   // destination domains of the throughput loads
	benchSmallCount   = 2000 // small messages per round
	benchSmallSize    = 6600
	benchLargeCount   = 100 // large messages per round
	benchLargeSize    = 1 << 20
	benchStalledCount = 2000 // messages of the stalled load, for each side
	benchStalledGood  = 25   // destinations that take mail
	benchStalledBad   = 25   // destinations that never answer
	benchInjectConns  = 8    // SMTP connections that queue a load
	benchWaitLimit    = 10 * time.Minute
)

// benchStalledWindow is how long BenchmarkTransport/stalled watches: a
// delivery to a destination that never answers takes the transport 90 s
// (30 s for the TLS handshake on 443, 60 s for the SMTP greeting), so
// three minutes see two rounds of them.
var benchStalledWindow = flag.Duration("transport.stalled", 3*time.Minute,
	"how long BenchmarkTransport/stalled watches the transport with destinations that never answer")

// BenchmarkTransport compares filtermail's transport with Postfix's own
// smtp client. Both deliver the same loads, queued in a private Postfix
// while delivery is held and then released, to the same fake relays on
// loopback: SMTP on port 25 with STARTTLS and a certificate for the MX
// name that both verify, port 443 closed (the transport falls back to
// SMTP and then remembers the host as SMTP-only). After a warm-up the
// rounds alternate, Postfix first, then filtermail twice, then Postfix,
// so that both see the same machine.
//
// Its last part, stalled, watches the transport's memory and descriptors
// while half of 50 destinations never answer, and how soon the mail for
// the other half arrives, through filtermail and, at the same time,
// through Postfix's smtp client.
//
//	flock /tmp/filtermail-integration.lock go test -run '^$' -bench BenchmarkTransport -benchtime=1x ./integration/
//
// The details go to the standard output, a table at the end. The flag
// -transport.stalled (after the package) sets how long the stalled part
// watches.
func BenchmarkTransport(b *testing.B) {
	w := newBenchWorld(b, benchStalledGood, benchStalledBad)
	var rows []string
	for _, l := range []benchLoad{
		{name: "small", n: benchSmallCount, size: benchSmallSize, relays: w.good[:benchDomains]},
		{name: "large", n: benchLargeCount, size: benchLargeSize, relays: w.good[:benchDomains]},
	} {
		b.Run(l.name, func(b *testing.B) {
			fm, pf, size := benchThroughput(b, w, l)
			b.ReportMetric(fm, "filtermail-msg/s")
			b.ReportMetric(pf, "postfix-msg/s")
			b.ReportMetric(fm/pf, "ratio")
			b.ReportMetric(0, "ns/op")
			rows = append(rows, fmt.Sprintf("%-6s %5d x %7d B to %2d domains  %10.1f  %7.1f  %5.2f",
				l.name, l.n, size, len(l.relays), fm, pf, fm/pf))
		})
	}
	var stalled string
	b.Run("stalled", func(b *testing.B) {
		s := benchStalled(b, w)
		b.ReportMetric(float64(s.peakRSS)/(1<<20), "peak-RSS-MiB")
		b.ReportMetric(float64(s.maxFDs), "max-fds")
		b.ReportMetric(float64(s.maxGoroutines), "max-goroutines")
		b.ReportMetric(0, "ns/op")
		stalled = fmt.Sprintf("stalled: %d messages to %d domains, %d never answer, watched %v:\n"+
			"  transport: peak RSS %.1f MiB (VmHWM %.1f MiB), max %d fds, max %d goroutines\n"+
			"  mail for the good domains all delivered after: filtermail %s, Postfix %s",
			benchStalledCount, benchStalledGood+benchStalledBad, benchStalledBad, *benchStalledWindow,
			float64(s.peakRSS)/(1<<20), float64(s.hwm)/(1<<20), s.maxFDs, s.maxGoroutines, s.goodDone["filtermail"], s.goodDone["postfix"])
	})
	// A benchmark's own log is shown only with -v: the table goes to the
	// standard output.
	fmt.Printf("\nload   messages            destinations  filtermail  postfix  ratio  (msg/s)\n")
	for _, r := range rows {
		fmt.Println(r)
	}
	if stalled != "" {
		fmt.Println(stalled)
	}
}

// benchRelay is the fake relay of one destination domain.
type benchRelay struct {
	domain string // dest01.example
	mx     string // mx.dest01.example, the name its certificate holds
	host   string // its loopback address
	smtp   *relaytest.SMTP
}

// benchWorld is the network of the benchmark: destinations whose relays
// take mail over SMTP with STARTTLS, destinations whose relays never
// answer, a test CA, and a DNS server that holds the MX and A records of
// them all.
type benchWorld struct {
	ca   *relaytest.CA
	dns  *dnstest.Server
	good []*benchRelay
	bad  []*benchRelay
}

func newBenchWorld(tb testing.TB, good, bad int) *benchWorld {
	tb.Helper()
	ca, err := relaytest.NewCA(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	// Postfix's processes read the CA file.
	os.Chmod(filepath.Dir(ca.CertFile), 0o755)
	w := &benchWorld{ca: ca, dns: dnstest.Start(tb)}
	for i := range good + bad {
		r := &benchRelay{domain: fmt.Sprintf("dest%02d.example", i+1), host: testnet.Host(tb)}
		r.mx = "mx." + r.domain
		cert, err := ca.Certificate(r.mx)
		if err != nil {
			tb.Fatal(err)
		}
		r.smtp = relaytest.StartSMTP(tb, r.host, relaytest.SMTPOptions{Cert: &cert})
		w.dns.MX(r.domain, 10, r.mx)
		w.dns.A(r.mx, r.host)
		if i < good {
			w.good = append(w.good, r)
			continue
		}
		r.smtp.StallGreeting()
		relaytest.StartHTTPS(tb, r.host, cert).StallHandshake()
		w.bad = append(w.bad, r)
	}
	return w
}

// benchLoad is n messages of about size bytes, spread evenly over the
// domains of relays.
type benchLoad struct {
	name   string
	n      int
	size   int
	relays []*benchRelay
}

// benchMessage is one message of a load: to one recipient, with a
// Message-ID of its own.
type benchMessage struct {
	to    string
	id    string
	relay *benchRelay
	data  []byte
}

// messages returns the messages of one round of l; tag makes their
// recipients and Message-IDs differ from those of other rounds.
func (l benchLoad) messages(tb testing.TB, tag string) []benchMessage {
	tb.Helper()
	const from = "sender@" + domain
	// Armor takes 4 bytes for 3; the header and the MIME parts take
	// about 700 bytes.
	payload := make([]byte, max(l.size-900, 100)*3/4)
	rand.Read(payload)
	body := filtertest.Armor(tb, payload)
	msgs := make([]benchMessage, l.n)
	for i := range msgs {
		r := l.relays[i%len(l.relays)]
		m := benchMessage{to: fmt.Sprintf("%s-%d@%s", tag, i, r.domain), id: fmt.Sprintf("<%s-%d@bench.%s>", tag, i, domain), relay: r}
		m.data = append([]byte("Message-ID: "+m.id+"\r\n"), filtertest.Encrypted(from, m.to, body)...)
		msgs[i] = m
	}
	return msgs
}

// benchThroughput delivers l four times, alternately through Postfix's
// smtp client and through filtermail, after a tenth of it through each
// to warm up connections, TLS sessions and what the transport remembers
// of hosts. It returns the messages per second of each, and the size of a
// message.
func benchThroughput(b *testing.B, w *benchWorld, l benchLoad) (filtermail, postfix float64, size int) {
	pf := startBaseline(b, w, l.relays)
	fm := startFiltermailSide(b, w)
	warm := l
	warm.n = max(l.n/10, len(l.relays))
	for _, side := range []*benchPostfix{pf, fm} {
		r := side.deliverAll(warm.messages(b, l.name+"-warm-"+side.name))
		fmt.Printf("%s: %-10s warm-up: %d messages in %v\n", l.name, side.name, warm.n, r.took.Round(time.Millisecond))
	}
	took := map[*benchPostfix]time.Duration{}
	for round, side := range []*benchPostfix{pf, fm, fm, pf} {
		msgs := l.messages(b, fmt.Sprintf("%s-%d", l.name, round+1))
		size = len(msgs[0].data)
		busy := fm.busy()
		r := side.deliverAll(msgs)
		took[side] += r.took
		n := float64(len(msgs))
		fmt.Printf("%s: %-10s round %d: %d messages in %6v: %6.1f msg/s; CPU ms/message: transport %.2f, relays and DNS %.2f, Postfix and the rest %.2f (machine %.0f%% busy)",
			l.name, side.name, round+1, len(msgs), r.took.Round(time.Millisecond), n/r.took.Seconds(),
			r.cpu.transport.Seconds()*1000/n, r.cpu.test.Seconds()*1000/n, r.cpu.rest().Seconds()*1000/n,
			100*r.cpu.machine.Seconds()/r.took.Seconds()/float64(benchCPUs()))
		if side == fm {
			fmt.Printf("; at most %d deliveries in flight, %d LMTP commands answered \"Transport busy\"", r.inFlight, fm.busy()-busy)
		}
		fmt.Println()
	}
	_, hwm := benchProcStatus(fm.daemon.Cmd.Process.Pid)
	fmt.Printf("%s: the transport's VmHWM: %.1f MiB\n", l.name, float64(hwm)/(1<<20))
	return 2 * float64(l.n) / took[fm].Seconds(), 2 * float64(l.n) / took[pf].Seconds(), size
}

// startBaseline starts a Postfix that delivers with its own smtp client:
// each domain to its relay's address, with STARTTLS and the certificate
// verified against the MX name, trusted through the test CA.
func startBaseline(tb testing.TB, w *benchWorld, relays []*benchRelay) *benchPostfix {
	tb.Helper()
	var transport, policy strings.Builder
	for _, r := range relays {
		fmt.Fprintf(&transport, "%s smtp:[%s]:25\n", r.domain, r.host)
		fmt.Fprintf(&policy, "[%s]:25 secure match=%s\n", r.host, r.mx)
	}
	return startBenchPostfix(tb, "postfix", postfixConfig{
		Main: []string{
			"default_transport = smtp",
			"transport_maps = texthash:${config_directory}/transport",
			"smtp_tls_security_level = secure",
			"smtp_tls_policy_maps = texthash:${config_directory}/tls_policy",
			"smtp_tls_CAfile = " + w.ca.CertFile,
			"smtp_tls_session_cache_database = btree:${data_directory}/smtp_scache",
			"smtp_tls_protocols = >=TLSv1.2",
			"smtp_tls_mandatory_protocols = >=TLSv1.2",
		},
		Services: []service{{Name: "tlsmgr", Entry: "tlsmgr unix - - n 1000? 1 tlsmgr\n"}},
		Files:    map[string]string{"transport": transport.String(), "tls_policy": policy.String()},
	})
}

// startFiltermailSide starts filtermail's transport and a Postfix that
// delivers through it, wired as the relay wires them: default_transport
// lmtp-filtermail, an lmtp service with maxproc 500, and no concurrency
// limit of Postfix's in the way. The transport listens on its default
// ports on the instance's host, resolves through the world's DNS server
// and trusts the test CA.
func startFiltermailSide(tb testing.TB, w *benchWorld) *benchPostfix {
	tb.Helper()
	host := testnet.Host(tb)
	d := daemontest.Start(tb, binary, daemontest.Options{
		Mode: "transport",
		Params: []string{
			"mail_domain = " + domain,
			"filtermail_host = " + host,
			"filtermail_dns_resolver = " + w.dns.Addr(),
		},
		Env: []string{"SSL_CERT_FILE=" + w.ca.CertFile},
	})
	p := startBenchPostfix(tb, "filtermail", postfixConfig{
		Host: host,
		Main: []string{
			"default_transport = lmtp-filtermail:inet:[" + host + "]:10083",
			"lmtp-filtermail_initial_destination_concurrency = 10000",
			"lmtp-filtermail_destination_concurrency_limit = 10000",
		},
		Services: []service{{Name: "lmtp-filtermail", Entry: "lmtp-filtermail unix - - n - 500 lmtp\n" +
			"  -o syslog_name=postfix/lmtp-filtermail\n  -o lmtp_tls_security_level=none\n"}},
	})
	p.daemon = d
	p.metrics = "http://" + net.JoinHostPort(host, "10086") + "/metrics"
	return p
}

// benchPostfix is a private Postfix instance of the benchmark, and the
// transport it delivers through, if any. Its smtpd puts the mail it takes
// on hold, so that a load is queued before its delivery starts.
type benchPostfix struct {
	*postfix

	daemon  *daemontest.Daemon // the transport, or nil
	metrics string             // the transport's /metrics
}

// benchMain is what main.cf of every instance of the benchmark has on
// top of the tests' own: an smtpd that puts every message on hold, and
// mail that stays queued for two days, bounces too, as on a relay.
var benchMain = []string{
	"smtpd_relay_restrictions = permit_mynetworks, reject",
	"smtpd_recipient_restrictions = check_recipient_access static:HOLD",
	"maximal_queue_lifetime = 2d",
	"bounce_queue_lifetime = 2d",
}

// startBenchPostfix starts an instance as startPostfix does, with an
// smtpd on port 25 of its host and the lines of benchMain before those
// of cfg.Main; a failure logs the end of its log. When cfg.Host is
// empty, it has a host of its own.
func startBenchPostfix(tb testing.TB, name string, cfg postfixConfig) *benchPostfix {
	tb.Helper()
	if cfg.Host == "" {
		cfg.Host = testnet.Host(tb)
	}
	smtpd := net.JoinHostPort(cfg.Host, "25")
	cfg.Services = append([]service{{Name: "smtpd", Addr: smtpd, Entry: smtpd + " inet n - n - - smtpd\n"}}, cfg.Services...)
	cfg.Main = append(slices.Clone(benchMain), cfg.Main...)
	cfg.Name, cfg.LogTail = name, 8000
	return &benchPostfix{postfix: startPostfix(tb, cfg)}
}

// queued counts the messages in the instance's queue: the files of its
// queue folders.
func (p *benchPostfix) queued() int {
	n := 0
	for _, q := range []string{"maildrop", "incoming", "active", "deferred", "hold"} {
		filepath.WalkDir(filepath.Join(p.dir, "queue", q), func(_ string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				n++
			}
			return nil
		})
	}
	return n
}

// queuedRecipients returns the recipients of the messages in the queue.
func (p *benchPostfix) queuedRecipients() map[string]bool {
	p.t.Helper()
	rcpts := map[string]bool{}
	for line := range strings.Lines(p.queue()) {
		var entry struct {
			Recipients []struct {
				Address string `json:"address"`
			} `json:"recipients"`
		}
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			p.t.Fatalf("postqueue -j: %v: %q", err, line)
		}
		for _, r := range entry.Recipients {
			rcpts[r.Address] = true
		}
	}
	return rcpts
}

// inject queues msgs through the instance's smtpd, which puts each on
// hold.
func (p *benchPostfix) inject(msgs []benchMessage) {
	p.t.Helper()
	held := p.queued()
	errs := make(chan error, benchInjectConns)
	var wg sync.WaitGroup
	for c := range benchInjectConns {
		wg.Go(func() {
			client, err := smtp.Dial(p.Addr("smtpd"))
			if err != nil {
				errs <- err
				return
			}
			defer client.Close()
			for i := c; i < len(msgs); i += benchInjectConns {
				m := msgs[i]
				if err := client.SendMail("sender@"+domain, []string{m.to}, bytes.NewReader(m.data)); err != nil {
					errs <- fmt.Errorf("queueing %s: %w", m.id, err)
					return
				}
			}
			client.Quit()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		p.t.Fatal(err)
	}
	if n := p.queued(); n != held+len(msgs) {
		p.t.Fatalf("%s: %d messages queued, want %d", p.name, n, held+len(msgs))
	}
}

// release lets the messages on hold go: into the deferred queue, and a
// flush of that.
func (p *benchPostfix) release() {
	p.t.Helper()
	if out, err := exec.Command("postsuper", "-c", p.conf, "-H", "ALL").CombinedOutput(); err != nil {
		p.t.Fatalf("postsuper -H: %v\n%s", err, out)
	}
	if out, err := exec.Command("postqueue", "-c", p.conf, "-f").CombinedOutput(); err != nil {
		p.t.Fatalf("postqueue -f: %v\n%s", err, out)
	}
}

// benchRound is what one delivery of a load took.
type benchRound struct {
	took     time.Duration
	cpu      benchCPU
	inFlight int // the most deliveries the transport had in flight
}

// deliverAll queues msgs on hold, releases them, and waits until the
// queue is empty and every message has reached its relay. Each must
// arrive once, at its own relay, and nothing may bounce.
func (p *benchPostfix) deliverAll(msgs []benchMessage) benchRound {
	p.t.Helper()
	p.inject(msgs)
	before := map[*benchRelay]int{}
	for _, m := range msgs {
		if _, ok := before[m.relay]; !ok {
			before[m.relay] = len(m.relay.smtp.Messages())
		}
	}
	transactions := func() int {
		n := 0
		for r := range before {
			n += r.smtp.Transactions()
		}
		return n
	}
	started := transactions()
	var r benchRound
	cpu := p.cpu()
	start := time.Now()
	p.release()
	for i, deadline := 0, start.Add(benchWaitLimit); ; i++ {
		if transactions()-started >= len(msgs) && p.queued() == 0 {
			r.took = time.Since(start)
			break
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: after %v, %d messages still queued", p.name, benchWaitLimit, p.queued())
		}
		if p.metrics != "" && i%5 == 0 {
			r.inFlight = max(r.inFlight, int(p.metric("filtermail_transport_deliveries_in_flight")))
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.cpu = p.cpu().since(cpu)
	got := map[string]int{}
	for r, n := range before {
		for _, m := range r.smtp.Messages()[n:] {
			got[r.domain+" "+benchMessageID(m.Data)]++
		}
	}
	for _, m := range msgs {
		if n := got[m.relay.domain+" "+m.id]; n != 1 {
			p.t.Fatalf("%s: %s arrived %d times at %s", p.name, m.id, n, m.relay.domain)
		}
	}
	if n := strings.Count(p.Log(), "status=bounced"); n > 0 {
		p.t.Fatalf("%s: %d bounces", p.name, n)
	}
	return r
}

// benchMessageID returns the Message-ID of a message the benchmark sent.
func benchMessageID(msg []byte) string {
	_, rest, _ := bytes.Cut(msg, []byte("Message-ID: "))
	id, _, _ := bytes.Cut(rest, []byte("\r\n"))
	return string(id)
}

// metric returns the sum of the samples of the transport's metric name
// whose labels hold every one of labels.
func (p *benchPostfix) metric(name string, labels ...string) float64 {
	if p.metrics == "" {
		return 0
	}
	resp, err := http.Get(p.metrics)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		if slices.ContainsFunc(labels, func(l string) bool { return !strings.Contains(line, l) }) {
			continue
		}
		if v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64); err == nil {
			sum += v
		}
	}
	io.Copy(io.Discard, resp.Body)
	return sum
}

// busy is how many commands the transport answered "Transport busy".
func (p *benchPostfix) busy() int { return int(p.metric("filtermail_transport_busy_total")) }

// benchCPU is CPU time used: by the transport, by this process (the fake
// relays, the DNS server, the benchmark) and by the whole machine.
type benchCPU struct {
	transport, test, machine time.Duration
}

// rest is the CPU time of the others: Postfix, mostly.
func (c benchCPU) rest() time.Duration { return c.machine - c.transport - c.test }

func (c benchCPU) since(before benchCPU) benchCPU {
	return benchCPU{c.transport - before.transport, c.test - before.test, c.machine - before.machine}
}

// cpu returns the CPU time used so far.
func (p *benchPostfix) cpu() benchCPU {
	var c benchCPU
	if p.daemon != nil {
		c.transport = benchProcCPU(p.daemon.Cmd.Process.Pid)
	}
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	c.test = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	// The first line of /proc/stat: user nice system idle iowait irq
	// softirq steal, in ticks.
	b, _ := os.ReadFile("/proc/stat")
	line, _, _ := strings.Cut(string(b), "\n")
	for i, f := range strings.Fields(line) {
		n, _ := strconv.ParseInt(f, 10, 64)
		if i >= 1 && i <= 8 && i != 4 && i != 5 {
			c.machine += time.Duration(n) * time.Second / benchClockTicks
		}
	}
	return c
}

// benchClockTicks is the unit of CPU times in /proc: USER_HZ, 100 on Linux.
const benchClockTicks = 100

// benchProcCPU returns the CPU time process pid has used.
func benchProcCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// After "pid (comm) ": state is field 3, utime 14 and stime 15.
	_, rest, _ := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * time.Second / benchClockTicks
}

// benchCPUs is how many processors the machine has.
func benchCPUs() int {
	b, _ := os.ReadFile("/proc/stat")
	n := 0
	for line := range strings.Lines(string(b)) {
		if strings.HasPrefix(line, "cpu") && !strings.HasPrefix(line, "cpu ") {
			n++
		}
	}
	return max(n, 1)
}

// benchStalledResult is what BenchmarkTransport/stalled saw.
type benchStalledResult struct {
	peakRSS, hwm  int64
	maxFDs        int
	maxGoroutines int
	goodDone      map[string]string // by side: when the last mail for a good domain arrived
}

// benchSample is the transport process, and both queues, at one moment.
type benchSample struct {
	at         time.Duration
	rss, hwm   int64 // bytes
	heap       int64 // bytes of the Go heap in use
	fds        int
	goroutines int
	inFlight   int
	queued     int
	sent       map[string]int // messages delivered, by side
}

// benchStalled queues benchStalledCount messages for good and bad destinations
// alike in two instances, one that delivers through filtermail and one
// through Postfix's smtp client, releases them at once and watches for
// benchStalledWindow.
func benchStalled(b *testing.B, w *benchWorld) benchStalledResult {
	relays := append(slices.Clone(w.good), w.bad...)
	fm := startFiltermailSide(b, w)
	pf := startBaseline(b, w, relays)
	sides := []*benchPostfix{fm, pf}
	pid := fm.daemon.Cmd.Process.Pid
	l := benchLoad{name: "stalled", n: benchStalledCount, size: benchSmallSize, relays: relays}
	msgs := map[*benchPostfix][]benchMessage{}
	for _, p := range sides {
		msgs[p] = l.messages(b, "stalled-"+p.name)
		p.inject(msgs[p])
	}
	goodTotal := benchStalledCount * len(w.good) / len(relays)
	res := benchStalledResult{goodDone: map[string]string{"filtermail": "never", "postfix": "never"}}
	start := time.Now()
	for _, p := range sides {
		p.release()
	}
	var samples []benchSample
	for next := start; time.Since(start) < *benchStalledWindow; {
		next = next.Add(time.Second)
		time.Sleep(time.Until(next))
		s := benchSample{at: time.Since(start).Truncate(time.Second), queued: fm.queued(), sent: map[string]int{}}
		s.rss, s.hwm = benchProcStatus(pid)
		s.fds = benchProcFDs(pid)
		s.goroutines = int(fm.metric("go_goroutines"))
		s.heap = int64(fm.metric("go_memstats_heap_inuse_bytes"))
		s.inFlight = int(fm.metric("filtermail_transport_deliveries_in_flight"))
		for _, p := range sides {
			s.sent[p.name] = strings.Count(p.Log(), "status=sent")
			if res.goodDone[p.name] == "never" && s.sent[p.name] >= goodTotal {
				res.goodDone[p.name] = s.at.String()
			}
		}
		samples = append(samples, s)
		res.peakRSS = max(res.peakRSS, s.rss)
		res.hwm = max(res.hwm, s.hwm)
		res.maxFDs = max(res.maxFDs, s.fds)
		res.maxGoroutines = max(res.maxGoroutines, s.goroutines)
	}
	fmt.Printf("stalled: %d messages of %d bytes to each side, for %d domains, %d of which never answer (TLS on 443 and the SMTP greeting stall)\n",
		benchStalledCount, len(msgs[fm][0].data), len(relays), len(w.bad))
	fmt.Printf("%7s %8s %8s %9s %5s %10s %9s %7s %16s %13s\n", "t", "RSS MiB", "HWM MiB", "heap MiB", "fds", "goroutines",
		"in flight", "queued", "filtermail sent", "postfix sent")
	for i, s := range samples {
		if i < 10 || i%10 == 9 || i == len(samples)-1 {
			fmt.Printf("%7v %8.1f %8.1f %9.1f %5d %10d %9d %7d %16d %13d\n", s.at, float64(s.rss)/(1<<20), float64(s.hwm)/(1<<20),
				float64(s.heap)/(1<<20), s.fds, s.goroutines, s.inFlight, s.queued, s.sent["filtermail"], s.sent["postfix"])
		}
	}

	// Every message is with a good relay, once, or still queued. The
	// instances are stopped first: a message that moves between queue
	// folders could be missed in a running one.
	for _, p := range sides {
		p.stop()
	}
	got := map[string]int{}
	for _, r := range w.good {
		for _, m := range r.smtp.Messages() {
			got[benchMessageID(m.Data)]++
		}
	}
	for _, p := range sides {
		queued := p.queuedRecipients()
		lost, twice, delivered := 0, 0, 0
		for _, m := range msgs[p] {
			switch n := got[m.id]; {
			case n > 1:
				twice++
			case n == 1:
				delivered++
			case !queued[m.to]:
				lost++
			}
		}
		log := p.Log()
		fmt.Printf("%s: %d of %d messages for good domains delivered (all of them after %s), %d queued; Postfix logged %d status=sent, %d status=deferred, %d status=bounced\n",
			p.name, delivered, goodTotal, res.goodDone[p.name], len(queued),
			strings.Count(log, "status=sent"), strings.Count(log, "status=deferred"), strings.Count(log, "status=bounced"))
		fmt.Printf("%s: deferred for %s\n", p.name, benchDeferrals(log))
		if lost > 0 || twice > 0 {
			b.Errorf("%s: %d messages lost, %d delivered more than once", p.name, lost, twice)
		}
		if n := strings.Count(log, "status=bounced"); n > 0 {
			b.Errorf("%s: %d messages bounced", p.name, n)
		}
	}

	// Flat: the second half of the window holds no more than the first,
	// though Postfix keeps sending the stalled mail again.
	half := len(samples) / 2
	peak := func(s []benchSample, f func(benchSample) int64) int64 {
		m := int64(0)
		for _, x := range s {
			m = max(m, f(x))
		}
		return m
	}
	rss := func(s benchSample) int64 { return s.rss }
	fds := func(s benchSample) int64 { return int64(s.fds) }
	if first, second := peak(samples[:half], rss), peak(samples[half:], rss); second > first+first/4+8<<20 {
		b.Errorf("the transport's RSS grows: at most %.1f MiB in the first half of the window, %.1f MiB in the second",
			float64(first)/(1<<20), float64(second)/(1<<20))
	}
	if first, second := peak(samples[:half], fds), peak(samples[half:], fds); second > first+first/10+20 {
		b.Errorf("the transport's descriptors grow: at most %d in the first half of the window, %d in the second", first, second)
	}
	return res
}

// benchDeferrals counts the reasons Postfix logged for deferring mail:
// the reply, without addresses, up to "(in reply to …)".
func benchDeferrals(log string) string {
	counts := map[string]int{}
	for line := range strings.Lines(log) {
		_, why, ok := strings.Cut(line, "status=deferred (")
		if !ok {
			continue
		}
		if _, said, ok := strings.Cut(why, " said: "); ok {
			why = said
		}
		why, _, _ = strings.Cut(why, " (in reply to")
		var words []string
		for _, f := range strings.Fields(why) {
			if !strings.HasPrefix(f, "<") && !strings.Contains(f, ".example") && !strings.HasPrefix(f, "127.") {
				words = append(words, f)
			}
		}
		counts[strings.Join(words, " ")]++
	}
	var parts []string
	for k, n := range counts {
		parts = append(parts, fmt.Sprintf("%d× %q", n, k))
	}
	if len(parts) == 0 {
		return "nothing"
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// benchProcStatus returns VmRSS and VmHWM of process pid, in bytes.
func benchProcStatus(pid int) (rss, hwm int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb << 10
		case "VmHWM:":
			hwm = kb << 10
		}
	}
	return rss, hwm
}

// benchProcFDs returns how many descriptors process pid has open.
func benchProcFDs(pid int) int {
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(fds)
}
