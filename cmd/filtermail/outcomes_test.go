package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"filtermail/filter/filtertest"
	"filtermail/metrics"
	"filtermail/smtpd/smtpdtest"
)

func messagesKey(dir, verdict, reason string) string {
	return fmt.Sprintf(`filtermail_messages_total{direction=%q,reason=%q,verdict=%q}`, dir, reason, verdict)
}

func commandsKey(dir, command, class string) string {
	return fmt.Sprintf(`filtermail_smtp_commands_total{code_class=%q,command=%q,direction=%q}`, class, command, dir)
}

// family returns the samples of s whose key starts with prefix.
func (s scrape) family(prefix string) map[string]float64 {
	f := map[string]float64{}
	for key, v := range s {
		if strings.HasPrefix(key, prefix) {
			f[key] = v
		}
	}
	return f
}

// wantAtZero fails the test unless a metric's samples at the start are
// exactly the exported series, each at 0.
func wantAtZero(t *testing.T, start map[string]float64, exported map[string]bool) {
	t.Helper()
	for key, v := range start {
		if !exported[key] || v != 0 {
			t.Errorf("at the start: %s %v", key, v)
		}
	}
	for key := range exported {
		if _, ok := start[key]; !ok {
			t.Errorf("%s not exported at the start", key)
		}
	}
}

// Every filtermail_messages_total series is exported at 0 from the start,
// and each has an input that moves it, and only it, through the daemon.
// An outcome added to the metrics without an input here fails the test.
func TestEveryOutcomeHasAnInput(t *testing.T) {
	const (
		strict  = "strict@chat.example.org"
		link    = "link@chat.example.org"
		echo    = "echo@chat.example.org"
		bot     = "bot@chat.example.org"
		gone    = "gone@chat.example.org"
		carol   = "carol@example.net"
		maxSize = 100000
	)
	large := filtertest.Plain(alice, bob, "large", strings.Repeat("0123456789\n", maxSize/10))
	world := newSenders(t, "example.net", "broken.example")
	world.unreachable("broken.example")
	signed := func(msg []byte) []byte { return world.sign(t, "example.net", msg) }
	v6 := filtertest.GoCryptoV6(t, []byte("hello"))
	send := func(from string, to []string, msg []byte) func(*smtpdtest.Client) string {
		return func(c *smtpdtest.Client) string { return c.Send(from, to, msg) }
	}
	bdatSend := func(from, to, chunk string) func(*smtpdtest.Client) string {
		return func(c *smtpdtest.Client) string {
			c.Want("MAIL FROM:<"+from+">", "250")
			c.Want("RCPT TO:<"+to+">", "250")
			fmt.Fprintf(c.Text.W, "BDAT %d LAST\r\n%s", len(chunk), chunk)
			c.Text.W.Flush()
			return c.Reply()
		}
	}
	rawSend := func(from, to, body string) func(*smtpdtest.Client) string {
		return func(c *smtpdtest.Client) string {
			c.Want("MAIL FROM:<"+from+">", "250")
			c.Want("RCPT TO:<"+to+">", "250")
			return c.RawData(body)
		}
	}
	inputs := map[string][]struct {
		verdict, reason, name string
		send                  func(*smtpdtest.Client) string
		reply                 string
	}{
		metrics.Outgoing: {
			{"pass", "encrypted", "encrypted", send(alice, []string{bob}, filtertest.Encrypted(alice, bob, v6)), "250"},
			{"pass", "securejoin", "Secure-Join request", send(alice, []string{bob}, secureJoinRequest(alice, bob)), "250"},
			{"pass", "passthrough_sender", "cleartext from a passthrough sender", send(bot, []string{bob}, filtertest.Plain(bot, bob, "hi", "hello")), "250"},
			{"pass", "autocrypt_setup", "Autocrypt Setup Message to oneself", send(alice, []string{alice}, autocryptSetup(alice)), "250"},
			{"pass", "passthrough_recipients", "cleartext to a passthrough recipient", send(alice, []string{echo}, filtertest.Plain(alice, echo, "hi", "hello")), "250"},
			{"refuse", "unencrypted", "cleartext", send(alice, []string{bob}, filtertest.Plain(alice, bob, "hi", "hello")), encryptionNeeded},
			{"refuse", "unencrypted", "armor header", send(alice, []string{bob}, filtertest.Encrypted(alice, bob, withComment(v6))), encryptionNeeded},
			{"refuse", "forged_from", "From header not the sender", send(alice, []string{bob}, filtertest.Encrypted("mallory@chat.example.org", bob, v6)),
				"500 Invalid FROM <mallory@chat.example.org> for <alice@chat.example.org>"},
			{"refuse", "bad_sender", "null sender", func(c *smtpdtest.Client) string { return c.Cmd("MAIL FROM:<>") }, "500 Invalid from address <>"},
			{"refuse", "bad_sender", "two at signs", func(c *smtpdtest.Client) string { return c.Cmd("MAIL FROM:<a@b@chat.example.org>") },
				"500 Invalid from address <a@b@chat.example.org>"},
			{"refuse", "too_large", "over max_message_size", send(alice, []string{bob}, large), "552"},
			{"refuse", "invalid_data", "a bare LF", rawSend(alice, bob, "From: <"+alice+">\r\n\nhi\r\n.\r\n"), "500 Invalid DATA"},
		},
		metrics.Incoming: {
			{"pass", "encrypted", "encrypted, with an armor header", send(bob, []string{strict}, signed(filtertest.Encrypted(bob, strict, withComment(v6)))), "250"},
			{"pass", "securejoin", "Secure-Join request", send(bob, []string{strict}, signed(secureJoinRequest(bob, strict))), "250"},
			{"pass", "mailer_daemon", "delivery report", send("", []string{strict}, signed(deliveryReport(strict))), "250"},
			{"pass", "cleartext_allowed", "cleartext to a user who allows it", send(bob, []string{alice}, signed(filtertest.Plain(bob, alice, "hi", "hello"))), "250"},
			{"refuse", "dkim_none", "not signed", send(bob, []string{strict}, filtertest.Encrypted(bob, strict, v6)), "554 5.7.1 No DKIM signature found"},
			{"refuse", "dkim_fail", "changed after signing", send(bob, []string{strict}, tamper(signed(filtertest.Encrypted(bob, strict, v6)))),
				"554 5.7.1 No valid DKIM signature found"},
			{"tempfail", "dkim_tempfail", "key lookup SERVFAIL", send("dave@broken.example", []string{strict},
				world.sign(t, "broken.example", filtertest.Encrypted("dave@broken.example", strict, v6))), "451 4.7.5"},
			{"refuse", "unencrypted", "cleartext to a user who refuses it", send(bob, []string{strict}, filtertest.Plain(bob, strict, "hi", "hello")), encryptionNeeded},
			{"refuse", "too_large", "over max_message_size", send(bob, []string{alice}, large), "552"},
			{"tempfail", "lookup_failed", "mailbox that leads outside mailboxes_dir", send(bob, []string{link}, filtertest.Plain(bob, link, "hi", "hello")), "451 4.3.0"},
			{"refuse", "invalid_from", "two From addresses", send(bob, []string{alice}, filtertest.Plain(bob+">, <"+carol, alice, "hi", "hello")), "500 Invalid FROM header"},
			{"refuse", "invalid_data", "no final CRLF", bdatSend(bob, alice, "From: <"+bob+">\r\n\r\nhi"), "500 Invalid DATA"},
			{"refuse", "invalid_data", "a bare CR", rawSend(bob, alice, "From: <"+bob+">\r\n\r\nHello!\r\r\n.\r\n"), "500 Invalid DATA"},
			{"dropped", "disabled", "every recipient disabled", send(bob, []string{gone}, filtertest.Plain(bob, gone, "hi", "hello")), "250"},
		},
	}

	for _, dir := range []string{metrics.Outgoing, metrics.Incoming} {
		t.Run(dir, func(t *testing.T) {
			sink := newSink(t, smtpdtest.Accept)
			d := startDaemonWith(t, dkimOn, dir, sink.Port, "passthrough_senders = "+bot, "passthrough_recipients = "+echo,
				"max_message_size = "+strconv.Itoa(maxSize), "max_user_send_burst_size = 100", world.param())
			d.mark(strict)
			d.disable(gone)
			outside := t.TempDir()
			if err := os.Symlink(outside, filepath.Join(d.mailDir, link)); err != nil {
				t.Fatal(err)
			}

			exported := map[string]bool{}
			for _, o := range metrics.Outcomes(dir) {
				exported[messagesKey(dir, o.Verdict, o.Reason)] = true
			}
			start := d.scrape(t).family("filtermail_messages_total{")
			wantAtZero(t, start, exported)

			moved := map[string]bool{}
			for _, in := range inputs[dir] {
				key := messagesKey(dir, in.verdict, in.reason)
				if !exported[key] {
					t.Errorf("%s: input for %s, which is not exported", in.name, key)
				}
				before := d.scrape(t).family("filtermail_messages_total{")
				wantReply(t, in.name, in.send(dial(t, d)), in.reply)
				after := d.scrape(t).family("filtermail_messages_total{")
				for k := range exported {
					want := 0.0
					if k == key {
						want = 1
					}
					if got := after[k] - before[k]; got != want {
						t.Errorf("%s: %s moved by %v, want %v", in.name, k, got, want)
					}
				}
				if len(after) != len(exported) {
					t.Errorf("%s: series %v, want only the exported ones", in.name, after)
				}
				moved[key] = true
			}
			for key := range exported {
				if !moved[key] {
					t.Errorf("no input moves %s", key)
				}
			}
		})
	}
}

// bdat sends one BDAT chunk and returns the reply.
func bdat(t *testing.T, c *smtpdtest.Client, chunk []byte, last bool) string {
	t.Helper()
	line := "BDAT " + strconv.Itoa(len(chunk))
	if last {
		line += " LAST"
	}
	w := c.Text.Writer.W
	w.WriteString(line + "\r\n")
	w.Write(chunk)
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return c.Reply()
}

// Every filtermail_smtp_commands_total series is exported at 0 from the
// start, each can be moved by a command, and no command adds another.
func TestEveryCommandReplyHasAnInput(t *testing.T) {
	for _, dir := range []string{metrics.Outgoing, metrics.Incoming} {
		t.Run(dir, func(t *testing.T) {
			sink := newSink(t, smtpdtest.Accept)
			d := startDaemon(t, dir, sink.Port, "max_user_send_per_minute = 1", "max_user_send_burst_size = 1")
			d.mark(bob) // incoming, cleartext to bob is refused
			exported := map[string]bool{}
			for _, c := range metrics.CommandReplies(dir) {
				exported[commandsKey(dir, c.Command, c.Class)] = true
			}
			before := d.scrape(t).family("filtermail_smtp_commands_total{")
			wantAtZero(t, before, exported)

			// Each transaction has a sender of its own: one MAIL per
			// sender and minute.
			n := 0
			sender := func() string { n++; return "user" + strconv.Itoa(n) + "@chat.example.org" }
			encrypted := func(from string) []byte {
				return filtertest.Encrypted(from, bob, filtertest.GoCryptoV6(t, []byte("hello")))
			}
			c := dial(t, d) // EHLO 250
			wantReply(t, "EHLO without a domain", c.Cmd("EHLO"), "501")
			wantReply(t, "HELO", c.Cmd("HELO client.test"), "250")
			wantReply(t, "HELO without a domain", c.Cmd("HELO"), "501")
			wantReply(t, "VRFY", c.Cmd("VRFY bob"), "252")
			wantReply(t, "unknown verb", c.Cmd("FROBNICATE"), "501")
			wantReply(t, "NOOP", c.Cmd("NOOP"), "250")
			wantReply(t, "RSET", c.Cmd("RSET"), "250")
			wantReply(t, "RCPT without MAIL", c.Cmd("RCPT TO:<"+bob+">"), "502")
			wantReply(t, "DATA without MAIL", c.Cmd("DATA"), "502")
			wantReply(t, "MAIL, SIZE over the limit", c.Cmd("MAIL FROM:<"+sender()+"> SIZE=999999999"), "552")
			if dir == metrics.Outgoing {
				s := sender()
				wantReply(t, "MAIL", c.Cmd("MAIL FROM:<"+s+">"), "250")
				c.Cmd("RSET")
				wantReply(t, "MAIL over the rate", c.Cmd("MAIL FROM:<"+s+">"), "450")
			}

			wantReply(t, "MAIL", c.Cmd("MAIL FROM:<"+sender()+">"), "250")
			for i := range 1000 {
				wantReply(t, "RCPT", c.Cmd("RCPT TO:<r"+strconv.Itoa(i)+"@example.net>"), "250")
			}
			wantReply(t, "RCPT past the limit", c.Cmd("RCPT TO:<one-too-many@example.net>"), "452")
			c.Cmd("RSET")

			s := sender()
			wantReply(t, "encrypted", c.Send(s, []string{bob}, encrypted(s)), "250")
			s = sender()
			wantReply(t, "cleartext", c.Send(s, []string{bob}, filtertest.Plain(s, bob, "hi", "hello")), "523")
			sink.SetMode(smtpdtest.TempFail)
			s = sender()
			wantReply(t, "Postfix busy", c.Send(s, []string{bob}, encrypted(s)), "451")

			s = sender()
			wantReply(t, "MAIL before BDAT", c.Cmd("MAIL FROM:<"+s+">"), "250")
			wantReply(t, "RCPT before BDAT", c.Cmd("RCPT TO:<"+bob+">"), "250")
			msg := encrypted(s)
			wantReply(t, "BDAT chunk", bdat(t, c, msg[:10], false), "250")
			wantReply(t, "BDAT LAST, Postfix busy", bdat(t, c, msg[10:], true), "451")
			sink.SetMode(smtpdtest.Accept)
			s = sender()
			c.Cmd("MAIL FROM:<" + s + ">")
			c.Cmd("RCPT TO:<" + bob + ">")
			wantReply(t, "BDAT LAST, cleartext", bdat(t, c, filtertest.Plain(s, bob, "hi", "hello"), true), "523")
			wantReply(t, "QUIT", c.Cmd("QUIT"), "221")

			d.waitGauge(t, `filtermail_smtp_connections{direction="`+dir+`"}`, 0)
			after := d.scrape(t).family("filtermail_smtp_commands_total{")
			for key := range exported {
				if after[key] < 1 {
					t.Errorf("no command moved %s", key)
				}
			}
			for key, v := range after {
				if !exported[key] {
					t.Errorf("%s %v is not exported", key, v)
				}
			}
		})
	}
}
