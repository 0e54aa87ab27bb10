package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"filtermail/filter/filtertest"
)

// A load is many encrypted messages of one size sent over several
// connections at once.
type load struct {
	name    string
	size    int // bytes of each message
	conns   int // connections at once
	perConn int // messages over each connection, per b.N
	// fresh sends each message over a connection of its own, as
	// Postfix's smtpd_proxy_filter does: it connects for each
	// transaction and says QUIT after it.
	fresh bool
}

// BenchmarkLoad sends each load straight from a generator to a fast sink
// (the limit of the two on this machine), then through the filtermail
// binary in outgoing mode into the same sink, and reports both rates,
// their ratio, and filtermail's peak RSS and CPU time per message. The
// generator writes DATA bodies in large writes, as Postfix's
// smtpd_proxy_filter does; "small" keeps its connections, "small-fresh"
// connects for each message as that filter does. Each load runs b.N times its messages, with a
// filtermail of its own; -benchtime=1x runs each once, in about 40 s in
// all on 2 cores.
//
//	go test -run '^$' -bench BenchmarkLoad -benchtime=1x ./cmd/filtermail/
func BenchmarkLoad(b *testing.B) {
	for _, l := range []load{
		{"small", 6600, 16, 500, false},
		{"small-fresh", 6600, 16, 500, true},
		{"7MB", 7_000_000, 8, 8, false},
		{"30MB", 30_000_000, 20, 2, false}, // below max_message_size, 31457280
	} {
		b.Run(l.name, func(b *testing.B) { runLoad(b, l) })
	}
}

func runLoad(b *testing.B, l load) {
	msg := loadMessage(b, l.size)
	body := dotStuff(msg)
	n := l.perConn * b.N
	total := int64(l.conns * n)
	sink := newFastSink(b)
	limit := generate(b, sink.addr(), l.conns, n, body, l.fresh)
	wantSunk(b, sink, total, len(msg))

	// A daemon of its own, so that its peak RSS is this load's.
	d := startDaemon(b, "outgoing", sink.Port,
		"max_user_send_per_minute = 1000000", "max_user_send_burst_size = 1000000")
	pid := d.Cmd.Process.Pid
	cpu0, err := cpuTime(pid)
	if err != nil {
		b.Fatal(err)
	}
	through := generate(b, d.addr(), l.conns, n, body, l.fresh)
	cpu1, err := cpuTime(pid)
	if err != nil {
		b.Fatal(err)
	}
	rss, err := peakRSS(pid)
	if err != nil {
		b.Fatal(err)
	}
	cpu := (cpu1 - cpu0).Seconds() * 1000 / float64(total)
	wantSunk(b, sink, 2*total, len(msg))

	rate := func(d time.Duration) float64 { return float64(total) / d.Seconds() }
	mb := func(d time.Duration) float64 { return rate(d) * float64(len(msg)) / 1e6 }
	ratio, rssMiB := limit.Seconds()/through.Seconds(), float64(rss)/(1<<20)
	b.ReportMetric(rate(through), "msg/s")
	b.ReportMetric(mb(through), "MB/s")
	b.ReportMetric(rate(limit), "limit-msg/s")
	b.ReportMetric(mb(limit), "limit-MB/s")
	b.ReportMetric(ratio, "ratio")
	b.ReportMetric(rssMiB, "peak-RSS-MiB")
	b.ReportMetric(cpu, "CPU-ms/msg")
	b.Logf("%s: %d messages of %d bytes, %d connections at once: limit %.1f msg/s (%.0f MB/s), "+
		"filtermail %.1f msg/s (%.0f MB/s), ratio %.3f; filtermail's peak RSS %.1f MiB, CPU %.2f ms a message",
		l.name, total, len(msg), l.conns, rate(limit), mb(limit), rate(through), mb(through), ratio, rssMiB, cpu)
}

// wantSunk fails the benchmark unless the sink has committed want
// messages of size bytes each so far. The messages have no line that
// starts with a dot, so their size is the same over DATA and BDAT.
func wantSunk(b *testing.B, s *fastSink, want int64, size int) {
	b.Helper()
	if m, n := s.messages.Load(), s.bytes.Load(); m != want || n != want*int64(size) {
		b.Fatalf("sink committed %d messages of %d bytes in all, want %d of %d", m, n, want, want*int64(size))
	}
}

// loadMessage returns an encrypted message from alice to bob of about size
// bytes, its payload random.
func loadMessage(b *testing.B, size int) []byte {
	b.Helper()
	msg := filtertest.EncryptedOfSize(b, alice, bob, size)
	if bytes.Contains(msg, []byte("\n.")) {
		b.Fatal("a line of the message starts with a dot")
	}
	return msg
}

// dotStuff returns msg as a DATA body: dot-stuffed, with the end-of-data
// line.
func dotStuff(msg []byte) []byte {
	body := bytes.ReplaceAll(msg, []byte("\r\n."), []byte("\r\n.."))
	if bytes.HasPrefix(body, []byte(".")) {
		body = append([]byte("."), body...)
	}
	return append(body, ".\r\n"...)
}

// generate sends n messages over each of conns connections to addr at
// once, body being a DATA body as dotStuff makes it, and returns the time
// from the first MAIL to the last reply. Any reply but the one expected
// fails the benchmark. If fresh, each of the conns clients connects for
// each message instead, and the time counts from the first connection.
func generate(b *testing.B, addr string, conns, n int, body []byte, fresh bool) time.Duration {
	b.Helper()
	if fresh {
		return generateFresh(b, addr, conns, n, body)
	}
	clients := make([]*loadClient, conns)
	for i := range clients {
		c, err := dialLoad(addr)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.conn.Close() })
		clients[i] = c
	}
	errs := make([]error, conns)
	var wg sync.WaitGroup
	start := time.Now()
	for i, c := range clients {
		wg.Go(func() { errs[i] = c.send(n, body) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		b.Fatal(err)
	}
	return elapsed
}

// generateFresh is generate with a connection for each message.
func generateFresh(b *testing.B, addr string, conns, n int, body []byte) time.Duration {
	b.Helper()
	errs := make([]error, conns)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range conns {
		wg.Go(func() {
			for range n {
				c, err := dialLoad(addr)
				if err == nil {
					err = c.send(1, body)
					c.conn.Close()
				}
				if err != nil {
					errs[i] = err
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		b.Fatal(err)
	}
	return elapsed
}

// loadClient is one connection of the generator.
type loadClient struct {
	conn net.Conn
	text *textproto.Conn
}

// dialLoad connects to addr and says EHLO.
func dialLoad(addr string) (*loadClient, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(10 * time.Minute))
	c := &loadClient{conn: conn, text: textproto.NewConn(conn)}
	if _, _, err := c.text.ReadResponse(220); err != nil {
		conn.Close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	if err := c.cmd("EHLO load.test", 250); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// cmd sends a command line and reads its reply, an error unless its code
// is code.
func (c *loadClient) cmd(line string, code int) error {
	if err := c.text.PrintfLine("%s", line); err != nil {
		return err
	}
	if _, _, err := c.text.ReadResponse(code); err != nil {
		return fmt.Errorf("%s: %w", strings.Fields(line)[0], err)
	}
	return nil
}

// send sends n messages, one transaction after the other, then QUIT.
func (c *loadClient) send(n int, body []byte) error {
	for range n {
		for _, step := range []struct {
			line string
			code int
		}{{"MAIL FROM:<" + alice + ">", 250}, {"RCPT TO:<" + bob + ">", 250}, {"DATA", 354}} {
			if err := c.cmd(step.line, step.code); err != nil {
				return err
			}
		}
		if _, err := c.conn.Write(body); err != nil {
			return err
		}
		if _, _, err := c.text.ReadResponse(250); err != nil {
			return fmt.Errorf("end of data: %w", err)
		}
	}
	return c.cmd("QUIT", 221)
}

// cpuTime returns the CPU time process pid has used, user and system, in
// clock ticks of 10 ms (Linux's USER_HZ).
func cpuTime(pid int) (time.Duration, error) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The fields after the command's name in parentheses, from the
	// state on: utime and stime are the 12th and 13th.
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(f) < 13 {
		return 0, errors.New("short /proc/" + strconv.Itoa(pid) + "/stat")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond, errors.Join(err1, err2)
}

// peakRSS returns the peak resident set size of process pid, VmHWM, in
// bytes.
func peakRSS(pid int) (int64, error) {
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kB, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kB << 10, err
		}
	}
	return 0, errors.New("no VmHWM in /proc/" + strconv.Itoa(pid) + "/status")
}
