package main

import (
	"bytes"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"filtermail/filter/filtertest"
	"filtermail/internal/daemontest"
	"filtermail/smtpd/smtpdtest"
)

// A transaction in flight when SIGTERM comes is finished: the client gets
// Postfix's real answer, the message arrives once, and the process exits 0.
// A client between transactions gets a 421 without waiting for it, and new
// connections are refused.
func TestSIGTERMFinishesTransactions(t *testing.T) {
	sink := newSink(t, smtpdtest.Accept)
	d := startDaemon(t, "outgoing", sink.Port)
	idle := dial(t, d)
	busy := dial(t, d)

	msg := filtertest.Encrypted(alice, bob, filtertest.GoCryptoV6(t, []byte("in flight")))
	arrived, release := sink.Hold(t)
	wantReply(t, "MAIL", busy.Cmd("MAIL FROM:<"+alice+">"), "250")
	wantReply(t, "RCPT", busy.Cmd("RCPT TO:<"+bob+">"), "250")
	wantReply(t, "DATA", busy.Cmd("DATA"), "354")
	w := busy.Text.DotWriter()
	w.Write(msg)
	w.Close()
	<-arrived // the message is at the sink, which holds its answer

	d.Cmd.Process.Signal(syscall.SIGTERM)
	// While the transaction is still in flight, the idle client is told
	// and the listener is closed.
	if got := idle.Reply(); !strings.HasPrefix(got, "421 4.3.2") {
		t.Errorf("idle client: %q, want 421", got)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		conn, err := net.Dial("tcp", d.addr())
		if err != nil {
			break
		}
		conn.Close()
		if time.Now().After(deadline) {
			t.Fatal("the filter still accepts connections after SIGTERM")
		}
	}
	release()

	if got := busy.Reply(); !strings.HasPrefix(got, "250") {
		t.Errorf("client in flight got %q, want the sink's 250", got)
	}
	<-d.Exited
	if code := d.Cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d", code)
	}
	wantDelivered(t, sink, smtpdtest.Message{From: alice, To: []string{bob}, Data: msg})
}

// A stopping filter lets an open transaction go on but starts no new one.
func TestSIGTERMRefusesNewTransactions(t *testing.T) {
	sink := newSink(t, smtpdtest.Accept)
	d := startDaemon(t, "outgoing", sink.Port)
	c := dial(t, d)
	wantReply(t, "MAIL", c.Cmd("MAIL FROM:<"+alice+">"), "250")
	d.Cmd.Process.Signal(syscall.SIGTERM)
	d.waitLog(t, "Stopping: finishing transactions in flight.", 1)
	// The open transaction may go on ...
	wantReply(t, "RCPT", c.Cmd("RCPT TO:<"+bob+">"), "250")
	// ... but a new one may not.
	wantReply(t, "RSET", c.Cmd("RSET"), "250")
	if got := c.Cmd("MAIL FROM:<" + alice + ">"); !strings.HasPrefix(got, "421 4.3.2") {
		t.Errorf("MAIL after RSET while stopping: %q", got)
	}
	<-d.Exited
	if len(sink.Messages()) != 0 {
		t.Error("a message arrived")
	}
}

func TestSIGINTExitsZero(t *testing.T) {
	d := startDaemon(t, "outgoing", newSink(t, smtpdtest.Accept).Port)
	d.Cmd.Process.Signal(os.Interrupt)
	<-d.Exited
	if code := d.Cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d after SIGINT", code)
	}
}

// SIGHUP applies a good config to the next transactions and refuses a
// broken one, keeping the running config.
func TestSIGHUPReloadsConfig(t *testing.T) {
	sink := newSink(t, smtpdtest.Accept)
	d := startDaemon(t, "outgoing", sink.Port, "passthrough_recipients =")
	cleartext := filtertest.Plain(alice, "echo@chat.example.org", "hi", "hello")
	send := func() string {
		return dial(t, d).Send(alice, []string{"echo@chat.example.org"}, cleartext)
	}
	wantReply(t, "before reload", send(), encryptionNeeded)

	ini, _ := os.ReadFile(d.IniPath)
	hup := func(text []byte, logLine string, n int) {
		t.Helper()
		os.WriteFile(d.IniPath, text, 0o644)
		d.Cmd.Process.Signal(syscall.SIGHUP)
		d.waitLog(t, logLine, n)
	}
	good := bytes.Replace(ini, []byte("passthrough_recipients ="), []byte("passthrough_recipients = echo@chat.example.org"), 1)
	hup(good, "Reloaded ", 1)
	wantReply(t, "after reload", send(), "250")

	hup(append(append([]byte{}, good...), "max_message_size = lots\n"...), "Reload failed, keeping the running config and pages: ", 1)
	if !strings.Contains(d.Log(), `max_message_size: "lots" is not a number`) {
		t.Errorf("the log does not say what is wrong:\n%s", d.Log())
	}
	wantReply(t, "after a failed reload", send(), "250")

	moved := append(append([]byte{}, good...), "filtermail_smtp_port = 1\n"...)
	hup(moved, "Reload: filtermail_smtp_port changed; that takes a restart.", 1)
	wantReply(t, "after a port change", send(), "250")

	_, metrics := d.get(t, "/metrics")
	for _, want := range []string{`filtermail_reloads_total{direction="outgoing",result="ok"} 2`, `filtermail_reloads_total{direction="outgoing",result="failed"} 1`} {
		if !bytes.Contains(metrics, []byte(want)) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestHealthz(t *testing.T) {
	sink := newSink(t, smtpdtest.Accept)
	d := startDaemon(t, "incoming", sink.Port)
	resp, body := d.get(t, "/healthz")
	if resp.StatusCode != 200 || string(body) != "ok\n" {
		t.Errorf("/healthz with Postfix up: %s %q", resp.Status, body)
	}
	sink.Close()
	// The last answer about Postfix stands for a few seconds.
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, body = d.get(t, "/healthz")
		if resp.StatusCode != 200 || time.Now().After(deadline) {
			break
		}
	}
	if resp.StatusCode != 503 || !strings.Contains(string(body), "reinjection port "+sink.Addr()) {
		t.Errorf("/healthz with Postfix down: %s %q", resp.Status, body)
	}
	// The probes leave nothing in the log and count no commands.
	if strings.Contains(d.Log(), "error") {
		t.Errorf("health checks were logged:\n%s", d.Log())
	}
	for key, v := range d.scrape(t) {
		if strings.HasPrefix(key, "filtermail_smtp_commands_total{") && v != 0 {
			t.Errorf("health checks counted as commands: %s %v", key, v)
		}
	}
}

func TestDebugLog(t *testing.T) {
	sink := newSink(t, smtpdtest.Accept)
	for how, o := range map[string]daemontest.Options{
		"flag": {Flags: []string{"-v"}},
		"env":  {Env: []string{"FILTERMAIL_LOG=debug"}},
	} {
		d := startDaemonWith(t, o, "outgoing", sink.Port)
		c := dial(t, d)
		wantReply(t, how, c.Send(alice, []string{bob}, filtertest.Encrypted(alice, bob, filtertest.GoCryptoV6(t, []byte("x")))), "250")
		d.waitLog(t, "Outgoing: SEIPD v2, 1 key packets", 1)
		d.waitLog(t, "Outgoing: Reinjected in ", 1)
	}
	d := startDaemon(t, "outgoing", sink.Port)
	wantReply(t, "info", dial(t, d).Send(alice, []string{bob}, filtertest.Encrypted(alice, bob, filtertest.GoCryptoV6(t, []byte("x")))), "250")
	d.waitLog(t, "Outgoing: pass (encrypted)", 1)
	if strings.Contains(d.Log(), "SEIPD v2") {
		t.Errorf("debug lines without -v:\n%s", d.Log())
	}
}

// systemd's notify protocol: READY=1 once the listeners are bound, and
// STOPPING=1 on SIGTERM.
func TestNotifySystemd(t *testing.T) {
	path := t.TempDir() + "/notify"
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	d := startDaemonWith(t, daemontest.Options{Env: []string{"NOTIFY_SOCKET=" + path}}, "outgoing", newSink(t, smtpdtest.Accept).Port)
	read := func() string {
		sock.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 512)
		n, err := sock.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		return string(buf[:n])
	}
	if got := read(); got != "READY=1" {
		t.Errorf("first notification %q", got)
	}
	d.Cmd.Process.Signal(syscall.SIGTERM)
	if got := read(); got != "STOPPING=1" {
		t.Errorf("notification on SIGTERM %q", got)
	}
}
