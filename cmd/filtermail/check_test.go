package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"filtermail/filter/filtertest"
	"filtermail/metrics"
)

// checkSetup writes a config and the mailboxes for check: a user who
// refuses cleartext, and one whose mailbox cannot be looked up.
func checkSetup(t *testing.T, extra string) (dir, ini string) {
	t.Helper()
	dir = t.TempDir()
	mailboxes := filepath.Join(dir, "mail")
	os.MkdirAll(filepath.Join(mailboxes, "strict@chat.example.org"), 0o755)
	os.WriteFile(filepath.Join(mailboxes, "strict@chat.example.org", "enforceE2EEincoming"), nil, 0o644)
	os.MkdirAll(filepath.Join(mailboxes, "gone@chat.example.org"), 0o755)
	os.WriteFile(filepath.Join(mailboxes, "gone@chat.example.org", "DISABLED"), nil, 0o644)
	os.MkdirAll(filepath.Join(dir, "outside"), 0o755)
	if err := os.Symlink(filepath.Join(dir, "outside"), filepath.Join(mailboxes, "link@chat.example.org")); err != nil {
		t.Fatal(err)
	}
	ini = filepath.Join(dir, "chatmail.ini")
	os.WriteFile(ini, []byte("[params]\nmail_domain = chat.example.org\nmailboxes_dir = "+mailboxes+"\n"+extra), 0o644)
	return dir, ini
}

// withComment adds an armor header, as some OpenPGP tools write one.
func withComment(armored string) string {
	begin, rest, _ := strings.Cut(armored, "\n")
	return begin + "\nComment: https://example.org/tool\n" + rest
}

func secureJoinRequest(from, to string) []byte {
	return filtertest.Message(
		"From: <"+from+">\nTo: <"+to+">\nSubject: [...]\nSecure-Join: vc-request\nMIME-Version: 1.0\n"+
			"Content-Type: multipart/mixed; boundary=\"sj\"",
		"--sj\nContent-Type: text/plain\n\nSecure-Join: vc-request\n--sj--\n")
}

func autocryptSetup(addr string) []byte {
	return filtertest.Message(
		"From: <"+addr+">\nTo: <"+addr+">\nSubject: Autocrypt Setup Message\nMIME-Version: 1.0\n"+
			"Content-Type: multipart/mixed; boundary=\"as\"",
		"--as\nContent-Type: text/plain\n\nThis is the Autocrypt setup message.\n--as--\n")
}

func deliveryReport(to string) []byte {
	return filtertest.Message(
		"From: <MAILER-DAEMON@example.net>\nTo: <"+to+">\nSubject: failure\nAuto-Submitted: auto-replied\nMIME-Version: 1.0\n"+
			"Content-Type: multipart/report; report-type=delivery-status; boundary=\"r\"",
		"--r\nContent-Type: text/plain\n\nIt failed.\n--r--\n")
}

// check explains each verdict by the rule that decided it, with the
// details the daemon decided on. Every outcome the daemon counts has a
// case here.
func TestCheckExplains(t *testing.T) {
	dir, ini := checkSetup(t, "passthrough_senders = bot@chat.example.org\n"+
		"passthrough_recipients = echo@chat.example.org\nmax_message_size = 100000\n")
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		os.WriteFile(path, data, 0o644)
		return path
	}
	const (
		strict  = "strict@chat.example.org"
		mallory = "mallory@chat.example.org"
		headers = " (sender from the From header, recipients from To, Cc and Bcc)"
	)
	gpg := filtertest.NewGnuPG(t)
	encrypted := write("encrypted.eml", filtertest.Encrypted(alice, bob, gpg.Encrypt([]byte("hello"))))
	armorHeader := write("armor-header.eml", filtertest.Encrypted(alice, bob, withComment(filtertest.GoCryptoV6(t, []byte("hello")))))
	armorHeaderIn := write("armor-header-in.eml", filtertest.Encrypted(bob, strict, withComment(filtertest.GoCryptoV6(t, []byte("hello")))))
	cleartext := write("cleartext.eml", filtertest.Plain(alice, bob, "hi", "hello"))
	signed := write("signed.eml", filtertest.Encrypted(alice, bob, gpg.Sign([]byte("hello"))))
	forged := write("forged.eml", filtertest.Encrypted(mallory, bob, filtertest.GoCryptoV4(t, []byte("hello"))))
	largeData := filtertest.Plain(alice, bob, "large", strings.Repeat("0123456789\n", 10000))
	large := write("large.eml", largeData)
	toStrict := write("strict.eml", filtertest.Plain(bob, strict, "hi", "hello"))
	toLink := write("link.eml", filtertest.Plain(bob, "link@chat.example.org", "hi", "hello"))
	toDisabled := write("disabled.eml", filtertest.Plain(bob, "gone@chat.example.org", "hi", "hello"))
	noFrom := write("nofrom.eml", filtertest.Message("To: <"+strict+">\nSubject: hi", "hello"))

	tests := []struct {
		name     string
		args     []string
		verdict  string
		reason   string
		lines    []string // each line must be in the output as it is
		refusing bool
	}{
		// Outgoing refusals.
		{"cleartext", []string{cleartext}, "refuse", "unencrypted", []string{
			"rule: not encrypted, not a Secure-Join request, not from a passthrough sender, not an Autocrypt Setup Message to the sender itself, and a recipient is not in passthrough_recipients",
			"recipient: <bob@example.net>",
			"not encrypted: not multipart",
			"envelope: from <alice@chat.example.org> to <bob@example.net>" + headers,
		}, true},
		{"armor header outgoing", []string{armorHeader}, "refuse", "unencrypted", []string{
			`not encrypted: armor header "Comment": outgoing mail must have none`,
			"openpgp: SEIPD v2, 1 key packets",
			"recipient: <bob@example.net>",
		}, true},
		{"signed, not encrypted", []string{signed}, "refuse", "unencrypted", []string{
			"recipient: <bob@example.net>",
		}, true},
		{"From header not the sender", []string{forged, "--from", alice}, "refuse", "forged_from", []string{
			"rule: the From header must hold the envelope sender, ignoring case",
			"from header: <mallory@chat.example.org>",
			"openpgp: SEIPD v1, 1 key packets",
			"envelope: from <alice@chat.example.org> to <bob@example.net> (recipients from To, Cc and Bcc)",
		}, true},
		{"null sender", []string{"--from=", encrypted}, "refuse", "bad_sender", []string{
			"rule: the envelope sender must be local@domain",
			"envelope: from <> to <bob@example.net> (recipients from To, Cc and Bcc)",
		}, true},
		{"too large", []string{large}, "refuse", "too_large", []string{
			"rule: a message larger than max_message_size (100000 bytes) is refused at the end of DATA",
			fmt.Sprintf("size: %d bytes", len(largeData)),
		}, true},
		// Outgoing passes.
		{"encrypted", []string{encrypted}, "pass", "encrypted", []string{
			"rule: encrypted: PGP/MIME holding an OpenPGP message of key packets and one SEIPD packet, armored without headers",
			"openpgp: SEIPD v1, 1 key packets",
			"envelope: from <alice@chat.example.org> to <bob@example.net>" + headers,
		}, false},
		{"Secure-Join", []string{write("sj.eml", secureJoinRequest(alice, bob))}, "pass", "securejoin", []string{
			"rule: a Secure-Join request (vc-request or vg-request) may be unencrypted",
			"not encrypted: top-level type multipart/mixed is not multipart/encrypted",
		}, false},
		{"passthrough sender", []string{write("bot.eml", filtertest.Plain("bot@chat.example.org", bob, "hi", "hello"))}, "pass", "passthrough_sender", []string{
			"rule: the sender is in passthrough_senders and may send unencrypted mail",
		}, false},
		{"Autocrypt Setup Message", []string{write("asm.eml", autocryptSetup(alice))}, "pass", "autocrypt_setup", []string{
			"rule: an Autocrypt Setup Message to the sender itself may be unencrypted",
		}, false},
		{"passthrough recipient given", []string{cleartext, "--to", "echo@chat.example.org"}, "pass", "passthrough_recipients", []string{
			"rule: every recipient is in passthrough_recipients and may get unencrypted mail",
			"envelope: from <alice@chat.example.org> to <echo@chat.example.org> (sender from the From header)",
		}, false},
		// Incoming.
		{"incoming to a user who refuses cleartext", []string{toStrict, "--incoming"}, "refuse", "unencrypted", []string{
			"rule: not encrypted, not a Secure-Join request, not a delivery report, and a recipient refuses unencrypted mail: it has the enforceE2EEincoming marker, or an address that cannot be looked up safely",
			"recipient: <strict@chat.example.org>",
			"not encrypted: not multipart",
		}, true},
		{"incoming too large", []string{"--incoming", large}, "refuse", "too_large", nil, true},
		{"incoming without a From address", []string{"--incoming", noFrom, "--from", bob}, "refuse", "invalid_from", []string{
			"rule: the From header must hold exactly one address",
		}, true},
		{"incoming to a disabled account", []string{"--incoming", toDisabled}, "dropped", "disabled", []string{
			"rule: every recipient's account has the DISABLED marker; the daemon accepts the message and delivers it to no one",
		}, false},
		{"incoming marker not looked up", []string{"--incoming", toLink}, "tempfail", "lookup_failed", []string{
			"rule: a marker file of a recipient (enforceE2EEincoming, DISABLED) could not be looked up; the daemon answers 451 and the sender tries again",
		}, true},
		{"incoming armor header", []string{"--incoming", armorHeaderIn}, "pass", "encrypted", []string{
			"rule: encrypted: PGP/MIME holding an OpenPGP message of key packets and one SEIPD packet (armor headers allowed)",
			"openpgp: SEIPD v2, 1 key packets",
		}, false},
		{"incoming Secure-Join", []string{"--incoming", write("sj-in.eml", secureJoinRequest(bob, strict))}, "pass", "securejoin", nil, false},
		{"incoming delivery report", []string{"--incoming", write("report.eml", deliveryReport(strict))}, "pass", "mailer_daemon", []string{
			"rule: a delivery report from mailer-daemon (Auto-Submitted, multipart/report) may be unencrypted",
		}, false},
		{"incoming cleartext allowed", []string{"--incoming", cleartext}, "pass", "cleartext_allowed", []string{
			"rule: no recipient has the enforceE2EEincoming marker, so unencrypted mail passes",
		}, false},
	}
	covered := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := check(append([]string{ini}, tt.args...), &out)
			if tt.refusing && err != refused || !tt.refusing && err != nil {
				t.Errorf("check: %v, refusing %v", err, tt.refusing)
			}
			got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			want := append([]string{"verdict: " + tt.verdict, "reason: " + tt.reason}, tt.lines...)
			for _, w := range want {
				if !contains(got, w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			if len(got) < 4 || got[0] != want[0] || got[1] != want[1] || !strings.HasPrefix(got[2], "rule: ") ||
				!strings.HasPrefix(got[len(got)-1], "envelope: ") {
				t.Errorf("output not verdict, reason, rule, details, envelope:\n%s", out.String())
			}
		})
		dir := metrics.Outgoing
		if contains(tt.args, "--incoming") {
			dir = metrics.Incoming
		}
		covered[dir+" "+tt.verdict+" "+tt.reason] = true
	}
	// check judges a file offline: line ends are the wire's business,
	// and DKIM needs the sender's DNS.
	daemonOnly := map[string]bool{metrics.ReasonInvalidData: true, metrics.ReasonDKIMNone: true,
		metrics.ReasonDKIMFail: true, metrics.ReasonDKIMTempFail: true}
	for _, dir := range []string{metrics.Outgoing, metrics.Incoming} {
		for _, o := range metrics.Outcomes(dir) {
			if !covered[dir+" "+o.Verdict+" "+o.Reason] && !daemonOnly[o.Reason] {
				t.Errorf("no case for %s %s %s", dir, o.Verdict, o.Reason)
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestCheckArguments(t *testing.T) {
	dir, ini := checkSetup(t, "")
	eml := filepath.Join(dir, "m.eml")
	os.WriteFile(eml, filtertest.Plain(alice, bob, "hi", "hello"), 0o644)
	for _, args := range [][]string{
		nil,
		{ini},
		{ini, eml, "extra"},
		{ini, eml, "--from"},
		{ini, eml, "--sideways"},
		{ini, filepath.Join(dir, "missing.eml")},
	} {
		err := check(args, new(bytes.Buffer))
		if !errors.As(err, new(usageError)) {
			t.Errorf("check %q: %v, want a usage error", args, err)
		}
	}
}

// The exit code says pass (0), not passed (1) or a usage error (2).
func TestCheckCommand(t *testing.T) {
	dir, ini := checkSetup(t, "passthrough_recipients = echo@chat.example.org\n")
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		os.WriteFile(path, data, 0o644)
		return path
	}
	encrypted := write("encrypted.eml", filtertest.Encrypted(alice, bob, filtertest.GoCryptoV6(t, []byte("hello"))))
	cleartext := write("cleartext.eml", filtertest.Plain(alice, bob, "hi", "hello"))
	toEcho := write("echo.eml", filtertest.Plain(alice, "echo@chat.example.org", "hi", "hello"))
	toStrict := write("strict.eml", filtertest.Plain(bob, "strict@chat.example.org", "hi", "hello"))

	tests := []struct {
		args []string
		code int
		want []string
	}{
		{[]string{encrypted}, 0, []string{"verdict: pass\n", "reason: encrypted\n", "openpgp: SEIPD v2"}},
		{[]string{cleartext}, 1, []string{"verdict: refuse\n", "reason: unencrypted\n", "not encrypted: "}},
		{[]string{toEcho}, 0, []string{"verdict: pass\n", "reason: passthrough_recipients\n"}},
		{[]string{toStrict, "--incoming"}, 1, []string{"verdict: refuse\n", "reason: unencrypted\n"}},
		{[]string{"-incoming", cleartext}, 0, []string{"verdict: pass\n", "reason: cleartext_allowed\n"}},
		{[]string{filepath.Join(dir, "missing.eml")}, 2, []string{"missing.eml"}},
		{nil, 2, []string{"usage:"}},
	}
	for _, tt := range tests {
		cmd := exec.Command(binary, append([]string{"check", ini}, tt.args...)...)
		out, _ := cmd.CombinedOutput()
		if code := cmd.ProcessState.ExitCode(); code != tt.code {
			t.Errorf("check %v: exit code %d, want %d\n%s", tt.args, code, tt.code, out)
		}
		for _, w := range tt.want {
			if !strings.Contains(string(out), w) {
				t.Errorf("check %v: output lacks %q:\n%s", tt.args, w, out)
			}
		}
	}
}
