package main

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"filtermail/filter/filtertest"
	"filtermail/internal/daemontest"
	"filtermail/internal/testnet"
	"filtermail/smtpd/smtpdtest"
)

// TestRelayBlackbox does what the chatmail relay's own test of filtermail
// (test_filtermail_blackbox.py) does: it starts the binary on a config
// that sets only the SMTP and reinjection ports, with FILTERMAIL_SKIP_DKIM=1,
// reads the first line on stderr — the line after the DKIM warning, if
// there is one — and wants "loop" in it; then one encrypted mail passes
// and one fake-encrypted mail gets 523. The relay creates the user with
// enforceE2EEincoming, so incoming cleartext is refused too.
func TestRelayBlackbox(t *testing.T) {
	const addr = "user1@example.org"
	for _, mode := range []string{"outgoing", "incoming"} {
		t.Run(mode, func(t *testing.T) {
			host := testnet.Host(t)
			sink := newSink(t, smtpdtest.Accept)
			mailboxes := t.TempDir()
			os.MkdirAll(filepath.Join(mailboxes, addr), 0o755)
			os.WriteFile(filepath.Join(mailboxes, addr, "enforceE2EEincoming"), nil, 0o644)
			smtpKey, reinjectKey := "filtermail_smtp_port", "postfix_reinject_port"
			if mode == "incoming" {
				smtpKey, reinjectKey = smtpKey+"_incoming", reinjectKey+"_incoming"
			}
			d := daemontest.Start(t, binary, daemontest.Options{
				Mode: mode,
				Params: []string{
					"mail_domain = example.org",
					"mailboxes_dir = " + mailboxes,
					smtpKey + " = 20025",
					reinjectKey + " = " + strconv.Itoa(sink.Port),
					// The relay's test runs on a machine of its own;
					// here, the other listeners keep their default
					// ports on a host of the test's.
					"filtermail_host = " + host,
				},
				Env: []string{"FILTERMAIL_SKIP_DKIM=1"},
			})
			lines := strings.SplitN(d.Log(), "\n", 3)
			line := lines[0]
			if strings.Contains(line, "DKIM verification DISABLED!") {
				if line != skipDKIMWarning {
					t.Errorf("warning %q, want %q", line, skipDKIMWarning)
				}
				line = lines[1]
			} else if mode == "incoming" {
				t.Errorf("incoming with FILTERMAIL_SKIP_DKIM=1: first line %q, want the warning", line)
			}
			if !strings.Contains(line, "loop") {
				t.Fatalf("first line after the warning %q has no \"loop\"", line)
			}

			c := smtpdtest.Dial(t, net.JoinHostPort(host, "20025"))
			encrypted := filtertest.Encrypted(addr, addr, filtertest.GoCryptoV4(t, []byte("hello")))
			wantReply(t, "encrypted", c.Send(addr, []string{addr}, encrypted), "250")
			if n := len(sink.Messages()); n != 1 {
				t.Errorf("sink has %d messages, want 1", n)
			}
			fake := filtertest.Encrypted(addr, addr,
				"-----BEGIN PGP MESSAGE-----\n\nVGhpcyBpcyBub3QgZW5jcnlwdGVkLg==\n-----END PGP MESSAGE-----\n")
			wantReply(t, "fake-encrypted", c.Send(addr, []string{addr}, fake), "523")
		})
	}
}
