package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"filtermail/filter/filtertest"
	"filtermail/internal/daemontest"
	"filtermail/internal/testnet"
	"filtermail/smtpd/smtpdtest"
)

const (
	alice = "alice@chat.example.org"
	bob   = "bob@example.net"
)

const encryptionNeeded = "523 Encryption Needed: Invalid Unencrypted Mail"

// wantDelivered fails unless the sink holds exactly the given messages,
// byte for byte, with their envelopes.
func wantDelivered(t *testing.T, sink *smtpdtest.Sink, want ...smtpdtest.Message) {
	t.Helper()
	got := sink.Messages()
	if len(got) != len(want) {
		t.Fatalf("sink got %d messages, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].From != want[i].From || strings.Join(got[i].To, ",") != strings.Join(want[i].To, ",") {
			t.Errorf("message %d: envelope %s -> %v, want %s -> %v", i, got[i].From, got[i].To, want[i].From, want[i].To)
		}
		if !bytes.Equal(got[i].Data, want[i].Data) {
			t.Errorf("message %d: sink got other bytes (%d, want %d)", i, len(got[i].Data), len(want[i].Data))
		}
	}
}

func TestOutgoing(t *testing.T) {
	sink := newSink(t, smtpdtest.Accept)
	d := startDaemon(t, "outgoing", sink.Port, "passthrough_recipients = echo@chat.example.org")
	c := dial(t, d)

	v6 := filtertest.Encrypted(alice, bob, filtertest.GoCryptoV6(t, []byte("hello")))
	wantReply(t, "encrypted", c.Send(alice, []string{bob, "carol@example.com"}, v6), "250")
	cleartext := filtertest.Plain(alice, bob, "hi", "hello")
	wantReply(t, "cleartext", c.Send(alice, []string{bob}, cleartext), encryptionNeeded)
	wantReply(t, "cleartext to passthrough", c.Send(alice, []string{"echo@chat.example.org"}, cleartext), "250")
	forged := filtertest.Encrypted("mallory@chat.example.org", bob, filtertest.GoCryptoV4(t, []byte("hi")))
	wantReply(t, "forged From", c.Send(alice, []string{bob}, forged),
		"500 Invalid FROM <mallory@chat.example.org> for <alice@chat.example.org>")
	wantReply(t, "null sender", c.Cmd("MAIL FROM:<>"), "500 Invalid from address <>")

	wantDelivered(t, sink,
		smtpdtest.Message{From: alice, To: []string{bob, "carol@example.com"}, Data: v6},
		smtpdtest.Message{From: alice, To: []string{"echo@chat.example.org"}, Data: cleartext})

	for _, line := range []string{
		"Outgoing: Filtering encrypted mail.\n",
		"Outgoing: Filtering unencrypted mail.\n",
		"Rejected unencrypted mail.\n",
		"Outgoing: refuse (unencrypted), 137 bytes, 1 recipients.\n",
		"Outgoing: pass (passthrough_recipients), 137 bytes, 1 recipients.\n",
	} {
		d.waitLog(t, line, 1)
	}
	log := d.Log()
	if client := c.Conn.LocalAddr().String(); strings.Contains(log, client) {
		t.Errorf("log holds the client's address %s", client)
	}
}

func TestIncoming(t *testing.T) {
	sink := newSink(t, smtpdtest.Accept)
	d := startDaemon(t, "incoming", sink.Port)
	strict := "strict@chat.example.org"
	d.mark(strict)
	c := dial(t, d)

	// Incoming mail may carry armor headers.
	armored := filtertest.GoCryptoV4(t, []byte("hello"))
	begin, rest, _ := strings.Cut(armored, "\n")
	encrypted := filtertest.Encrypted(bob, strict, begin+"\nVersion: Some Client 1.0\n"+rest)
	wantReply(t, "encrypted to strict user", c.Send(bob, []string{strict}, encrypted), "250")
	cleartext := filtertest.Plain(bob, strict, "hi", "hello")
	wantReply(t, "cleartext to strict user", c.Send(bob, []string{strict}, cleartext), encryptionNeeded)
	wantReply(t, "cleartext to strict and relaxed", c.Send(bob, []string{alice, strict}, cleartext), encryptionNeeded)
	wantReply(t, "cleartext to relaxed user", c.Send(bob, []string{alice}, cleartext), "250")
	wantReply(t, "unsafe address", c.Send(bob, []string{"../x@chat.example.org"}, cleartext), encryptionNeeded)
	// No sender checks incoming: the null sender and any From pass.
	wantReply(t, "null sender", c.Send("", []string{alice}, cleartext), "250")

	wantDelivered(t, sink,
		smtpdtest.Message{From: bob, To: []string{strict}, Data: encrypted},
		smtpdtest.Message{From: bob, To: []string{alice}, Data: cleartext},
		smtpdtest.Message{From: "", To: []string{alice}, Data: cleartext})
	for _, line := range []string{"Incoming: Filtering encrypted mail.\n", "Incoming: Filtering unencrypted mail.\n", "Rejected unencrypted mail.\n"} {
		d.waitLog(t, line, 1)
	}
}

func TestParameters(t *testing.T) {
	sink := newSink(t, smtpdtest.Accept)
	d := startDaemon(t, "outgoing", sink.Port)
	c := dial(t, d)
	msg := filtertest.Encrypted(alice, bob, filtertest.GoCryptoV6(t, []byte("hello")))

	wantReply(t, "MAIL FROM with parameters",
		c.Cmd("MAIL FROM:<"+alice+"> SIZE=1000 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=QQ314159 AUTH=<>"), "250")
	rcpts := []string{
		"<a@example.net> ORCPT=rfc822;a@example.net",
		"<b@example.net> NOTIFY=DELAY,FAILURE",
		"<c@example.net> NOTIFY=NEVER",
		"<d@example.net> X-ANYTHING=1",
		"<e@example.net> NOTIFY=garbage",
		"<f@example.net> NOTIFY=SUCCESS,DELAY,FAILURE ORCPT=rfc822;f@example.net",
		"<g@example.net> ORCPT=malformed =broken= X",
	}
	var to []string
	for _, r := range rcpts {
		wantReply(t, "RCPT TO:"+r, c.Cmd("RCPT TO:"+r), "250")
		to = append(to, r[1:strings.IndexByte(r, '>')])
	}
	wantReply(t, "DATA", c.Data(msg), "250")
	wantDelivered(t, sink, smtpdtest.Message{From: alice, To: to, Data: msg})
	if got := sink.Messages()[0].Opts; got.Body != "8BITMIME" || got.Return != "HDRS" || got.EnvelopeID != "QQ314159" {
		t.Errorf("MAIL FROM parameters not passed on: %+v", got)
	}
}

// Message content that looks like commands, dot lines and long lines passes
// through unchanged.
func TestContentUnchanged(t *testing.T) {
	sink := newSink(t, smtpdtest.Accept)
	d := startDaemon(t, "outgoing", sink.Port, "passthrough_recipients = @example.net")
	c := dial(t, d)
	body := strings.Join([]string{
		".", "..", ".hidden", " .", "RCPT TO:<x@example.net> NOTIFY=NEVER", "DATA", "BDAT 5 LAST",
		". ", strings.Repeat("x", 5000), "\u00e9t\u00e9", "",
	}, "\r\n")
	msg := filtertest.Message("From: <"+alice+">\nTo: <"+bob+">\nSubject: dots", body)
	wantReply(t, "tricky content", c.Send(alice, []string{bob}, msg), "250")
	wantReply(t, "next transaction", c.Send(alice, []string{bob}, msg), "250")
	wantDelivered(t, sink,
		smtpdtest.Message{From: alice, To: []string{bob}, Data: msg},
		smtpdtest.Message{From: alice, To: []string{bob}, Data: msg})
}

func TestRateLimit(t *testing.T) {
	sink := newSink(t, smtpdtest.Accept)
	d := startDaemon(t, "outgoing", sink.Port, "max_user_send_per_minute = 1", "max_user_send_burst_size = 3")
	c := dial(t, d)
	for i := 0; i < 3; i++ {
		wantReply(t, "within burst", c.Cmd("MAIL FROM:<"+alice+">"), "250")
		c.Cmd("RSET")
	}
	wantReply(t, "over the rate", c.Cmd("MAIL FROM:<"+alice+">"), "450 4.7.1: Too much mail from <alice@chat.example.org>")
	wantReply(t, "other sender", c.Cmd("MAIL FROM:<carol@chat.example.org>"), "250")
}

func TestSizeLimit(t *testing.T) {
	sink := newSink(t, smtpdtest.Accept)
	d := startDaemon(t, "outgoing", sink.Port, "max_message_size = 20000")
	c := dial(t, d)
	small := filtertest.Encrypted(alice, bob, filtertest.GoCryptoV6(t, []byte("hello")))
	large := filtertest.Encrypted(alice, bob, filtertest.GoCryptoV6(t, bytes.Repeat([]byte("0123456789"), 5000)))
	wantReply(t, "too large", c.Send(alice, []string{bob}, large), "552")
	wantReply(t, "SIZE too large", c.Cmd("MAIL FROM:<"+alice+"> SIZE=30000"), "552")
	wantReply(t, "small after large", c.Send(alice, []string{bob}, small), "250")
	wantDelivered(t, sink, smtpdtest.Message{From: alice, To: []string{bob}, Data: small})
}

func TestReinjectionFaults(t *testing.T) {
	msg := filtertest.Encrypted(alice, bob, filtertest.GoCryptoV6(t, bytes.Repeat([]byte("x"), 100000)))
	tests := []struct {
		name string
		mode smtpdtest.Mode
		to   []string
		want string
	}{
		{"Postfix answers 451", smtpdtest.TempFail, []string{bob}, "451 4.3.0 Sink is busy"},
		{"Postfix answers 554", smtpdtest.PermFail, []string{bob}, "554 5.7.1 Sink refuses this"},
		{"Postfix drops the connection in DATA", smtpdtest.DropMidData, []string{bob}, "451 4.4.2"},
		{"Postfix refuses one recipient", smtpdtest.RejectRcpt, []string{bob, "unknown@example.net"}, "550 5.1.1 User unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sink := newSink(t, tt.mode)
			d := startDaemon(t, "outgoing", sink.Port)
			c := dial(t, d)
			wantReply(t, tt.name, c.Send(alice, tt.to, msg), tt.want)
			wantDelivered(t, sink)
			sink.SetMode(smtpdtest.Accept)
			wantReply(t, "retry", c.Send(alice, tt.to[:1], msg), "250")
		})
	}
	t.Run("the others get it", func(t *testing.T) {
		// Postfix's answer for each recipient reaches the client, and
		// the recipients Postfix took get the message.
		sink := newSink(t, smtpdtest.RejectRcpt)
		d := startDaemon(t, "outgoing", sink.Port)
		c := dial(t, d)
		wantReply(t, "MAIL", c.Cmd("MAIL FROM:<"+alice+">"), "250")
		wantReply(t, "RCPT", c.Cmd("RCPT TO:<"+bob+">"), "250")
		wantReply(t, "RCPT", c.Cmd("RCPT TO:<unknown@example.net>"), "550 5.1.1 User unknown")
		wantReply(t, "RCPT", c.Cmd("RCPT TO:<carol@example.net>"), "250")
		wantReply(t, "end of data", c.Data(msg), "250")
		wantDelivered(t, sink, smtpdtest.Message{From: alice, To: []string{bob, "carol@example.net"}, Data: msg})
	})
	t.Run("Postfix down", func(t *testing.T) {
		// Nothing listens on a host of the test's own.
		d := startDaemon(t, "incoming", 10026, "postfix_host = "+testnet.Host(t))
		c := dial(t, d)
		wantReply(t, "sink down", c.Send(bob, []string{alice}, msg), "451 4.4.1")
	})
}

func TestStartErrors(t *testing.T) {
	// A host of the test's own: its ports are free unless the test takes
	// them.
	host := testnet.Host(t)
	dir := t.TempDir()
	write := func(name, text string) string {
		path := filepath.Join(dir, name)
		os.WriteFile(path, []byte(text), 0o644)
		return path
	}
	good := write("good.ini", "[params]\nmail_domain = x\nfiltermail_host = "+host+"\n")
	www := filepath.Join(dir, "www")
	os.CopyFS(www, os.DirFS("../../policypages/testdata/www"))
	os.WriteFile(filepath.Join(www, "src/info.md"), []byte("# Info\n\n{{ config.mail_domain | nosuchfilter }}\n"), 0o644)
	tests := []struct {
		name, want string
		args       []string
	}{
		{"no arguments", "usage:", nil},
		{"unknown mode", `unknown mode "sideways"`, []string{good, "sideways"}},
		{"missing config", "missing.ini", []string{filepath.Join(dir, "missing.ini"), "outgoing"}},
		{"no mail_domain", "mail_domain is required", []string{write("a.ini", "[params]\n"), "outgoing"}},
		{"not a number", "filtermail_smtp_port: \"ten\" is not a number",
			[]string{write("b.ini", "[params]\nmail_domain = x\nfiltermail_smtp_port = ten\n"), "outgoing"}},
		{"unknown language", `languages: unknown language code "XX"`,
			[]string{write("c.ini", "[params]\nmail_domain = x\nlanguages = EN XX\nfiltermail_host = "+host+"\n"), "outgoing"}},
		{"template error", "www/src/info.md:3: filter 'nosuchfilter' not found",
			[]string{write("d.ini", "[params]\nmail_domain = x\nwww_folder = "+www+"\nfiltermail_host = "+host+"\n"), "outgoing"}},
		{"bad resolver", `filtermail_dns_resolver: "127.0.0.1" is not an IP address and port`,
			[]string{write("g.ini", "[params]\nmail_domain = x\nfiltermail_dns_resolver = 127.0.0.1\nfiltermail_host = "+host+"\n"), "incoming"}},
		{"render: template error", "www/src/info.md:",
			[]string{"render", write("e.ini", "[params]\nmail_domain = x\nwww_folder = "+www+"\n"), filepath.Join(dir, "out")}},
		{"address not local", "filtermail_smtp_port: cannot listen on 192.0.2.1:10080: ",
			[]string{write("f.ini", "[params]\nmail_domain = x\nfiltermail_host = 192.0.2.1\n"), "outgoing"}},
	}
	for _, tt := range tests {
		cmd := exec.Command(binary, tt.args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		exit, _ := err.(*exec.ExitError)
		if exit == nil || exit.ExitCode() != 2 {
			t.Errorf("%s: %v, want exit code 2", tt.name, err)
		}
		if lines := strings.Count(stderr.String(), "\n"); lines != 1 || !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("%s: stderr %q, want one line saying %q", tt.name, stderr.String(), tt.want)
		}
	}
	// Nothing was bound or written.
	for _, port := range []string{"10080", "10081", "10082", "10083", "10084", "10085", "10086"} {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, port))
		if err != nil {
			t.Fatalf("port taken after failed starts: %v", err)
		}
		ln.Close()
	}
	if _, err := os.Stat(filepath.Join(dir, "out")); err == nil {
		t.Error("render wrote pages despite the error")
	}
}

// A port already in use stops the start with exit code 2 and one line
// naming its key; nothing is logged or left bound before it.
func TestStartPortInUse(t *testing.T) {
	host := testnet.Host(t)
	for _, tt := range []struct{ mode, key, port, other string }{
		{"outgoing", "filtermail_smtp_port", "10080", "10084"},
		{"outgoing", "filtermail_http_port", "10084", "10080"},
		{"incoming", "filtermail_smtp_port_incoming", "10081", "10082"},
		{"incoming", "filtermail_http_port_incoming", "10082", "10081"},
		{"incoming", "filtermail_metrics_port_incoming", "10085", "10081"},
	} {
		taken, err := net.Listen("tcp", net.JoinHostPort(host, tt.port))
		if err != nil {
			t.Fatal(err)
		}
		stderr, code := daemontest.Run(t, binary, daemontest.Options{Mode: tt.mode,
			Params: []string{"mail_domain = x", "filtermail_host = " + host}})
		taken.Close()
		want := fmt.Sprintf("filtermail: %s: %s:%s already in use\n", tt.key, host, tt.port)
		if code != 2 || stderr != want {
			t.Errorf("%s taken: exit code %d, stderr %q; want 2 and %q", tt.key, code, stderr, want)
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(host, tt.other))
		if err != nil {
			t.Errorf("%s taken: the other port is left bound: %v", tt.key, err)
		} else {
			ln.Close()
		}
	}
}

// Sockets passed the systemd way must each be a listener of the process.
func TestStartPassedSocketErrors(t *testing.T) {
	for _, tt := range []struct {
		name, want string
		o          daemontest.Options
	}{
		{"not a listener of this mode", "filtermail: LISTEN_FDNAMES: filtermail_smtp_port_incoming passed but not a listener of this process\n",
			daemontest.Options{Mode: "outgoing", Sockets: []string{"filtermail_smtp_port", "filtermail_smtp_port_incoming"}}},
		{"unknown name", "filtermail: LISTEN_FDNAMES: smtp passed but not a listener of this process\n",
			daemontest.Options{Mode: "incoming", Sockets: []string{"smtp"}}},
		{"no names", "filtermail: LISTEN_FDNAMES: 1 names for 2 sockets; ",
			daemontest.Options{Mode: "incoming", Sockets: []string{"a", "b"}, Env: []string{"LISTEN_FDNAMES="}}},
	} {
		tt.o.Params = []string{"mail_domain = x", "filtermail_host = " + testnet.Host(t)}
		stderr, code := daemontest.Run(t, binary, tt.o)
		if code != 2 || !strings.HasPrefix(stderr, tt.want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%s: exit code %d, stderr %q; want 2 and %q", tt.name, code, stderr, tt.want)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// The first line of a started filter is its serving line, which the
// relay's own tests wait for; warnings about the pages come after it.
func TestServingLineFirst(t *testing.T) {
	d := startDaemon(t, "outgoing", newSink(t, smtpdtest.Accept).Port, "languages = EN FR")
	d.waitLog(t, "the FR page says it is not translated", 1)
	first, rest, _ := strings.Cut(d.Log(), "\n")
	want := fmt.Sprintf("Outgoing filter: SMTP on 127.0.0.1:%d, pages and metrics on http://127.0.0.1:%d; entering serving loop.", d.port, d.httpPort)
	if first != want {
		t.Errorf("first line %q, want %q", first, want)
	}
	if !strings.Contains(rest, "Pages: ") || !strings.Contains(rest, "the FR page says it is not translated") {
		t.Errorf("no warning about the missing translation after the serving line:\n%s", d.Log())
	}
}
