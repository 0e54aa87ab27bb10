package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"filtermail/filter/filtertest"
)

func TestCheckCommand(t *testing.T) {
	dir := t.TempDir()
	mailboxes := filepath.Join(dir, "mail")
	os.MkdirAll(filepath.Join(mailboxes, "strict@chat.example.org"), 0o755)
	os.WriteFile(filepath.Join(mailboxes, "strict@chat.example.org", "enforceE2EEincoming"), nil, 0o644)
	ini := filepath.Join(dir, "chatmail.ini")
	os.WriteFile(ini, []byte("[params]\nmail_domain = chat.example.org\nmailboxes_dir = "+mailboxes+
		"\npassthrough_recipients = echo@chat.example.org\n"), 0o644)
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		os.WriteFile(path, data, 0o644)
		return path
	}
	gpg := filtertest.NewGnuPG(t)
	encrypted := write("encrypted.eml", filtertest.Encrypted(alice, bob, gpg.Encrypt([]byte("hello"))))
	cleartext := write("cleartext.eml", filtertest.Plain(alice, bob, "hi", "hello"))
	toEcho := write("echo.eml", filtertest.Plain(alice, "echo@chat.example.org", "hi", "hello"))
	toStrict := write("strict.eml", filtertest.Plain(bob, "strict@chat.example.org", "hi", "hello"))
	signed := write("signed.eml", filtertest.Encrypted(alice, bob, gpg.Sign([]byte("hello"))))

	tests := []struct {
		args []string
		code int
		want []string
	}{
		{[]string{encrypted}, 0, []string{"verdict: pass\n", "reason: encrypted\n", "openpgp: SEIPD v"}},
		{[]string{cleartext}, 1, []string{"verdict: refuse\n", "reason: unencrypted\n", "not encrypted: "}},
		{[]string{signed}, 1, []string{"verdict: refuse\n", "reason: unencrypted\n", "not encrypted: "}},
		{[]string{toEcho}, 0, []string{"verdict: pass\n", "reason: passthrough_recipients\n"}},
		{[]string{toStrict, "--incoming"}, 1, []string{"verdict: refuse\n", "reason: unencrypted\n"}},
		{[]string{cleartext, "--incoming"}, 0, []string{"verdict: pass\n", "reason: cleartext_allowed\n"}},
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
