package filtertest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// GnuPG is a throw-away GnuPG home with one key pair, for alice@example.org.
type GnuPG struct {
	t    testing.TB
	home string
}

// GnuPGUser is the user ID of the key in a GnuPG home.
const GnuPGUser = "alice@example.org"

// NewGnuPG makes a GnuPG home with a fresh key; gpg must be installed.
func NewGnuPG(t testing.TB) *GnuPG {
	t.Helper()
	// The agent's socket path must be short: not under t.TempDir().
	home, err := os.MkdirTemp("", "fm-gpg")
	if err != nil {
		t.Fatal(err)
	}
	g := &GnuPG{t: t, home: home}
	t.Cleanup(func() {
		cmd := exec.Command("gpgconf", "--kill", "gpg-agent")
		cmd.Env = append(os.Environ(), "GNUPGHOME="+home)
		cmd.Run()
		os.RemoveAll(home)
	})
	g.run(nil, "--quick-generate-key", GnuPGUser, "future-default", "default", "never")
	return g
}

func (g *GnuPG) run(stdin []byte, args ...string) string {
	g.t.Helper()
	args = append([]string{"--batch", "--no-tty", "--pinentry-mode", "loopback", "--passphrase", ""}, args...)
	cmd := exec.Command("gpg", args...)
	cmd.Env = append(os.Environ(), "GNUPGHOME="+g.home)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		g.t.Fatalf("gpg %v: %v\n%s", args, err, stderr.Bytes())
	}
	return string(out)
}

// Encrypt encrypts plaintext, read from a pipe, to the home's key. GnuPG
// writes legacy packet headers, and partial lengths when the input is
// larger than its buffer.
func (g *GnuPG) Encrypt(plaintext []byte) string {
	g.t.Helper()
	return g.run(plaintext, "--trust-model", "always", "--armor", "--encrypt", "--recipient", GnuPGUser)
}

// EncryptSymmetric encrypts plaintext with a passphrase (SKESK v4, SEIPD v1).
func (g *GnuPG) EncryptSymmetric(plaintext []byte) string {
	g.t.Helper()
	cmd := []string{"--armor", "--symmetric", "--passphrase", "correct horse"}
	return g.run(plaintext, cmd...)
}

// Sign signs plaintext without encrypting it, as a PGP MESSAGE.
func (g *GnuPG) Sign(plaintext []byte) string {
	g.t.Helper()
	return g.run(plaintext, "--armor", "--sign")
}

// ClearSign writes a cleartext-signed message.
func (g *GnuPG) ClearSign(plaintext []byte) string {
	g.t.Helper()
	return g.run(plaintext, "--clearsign")
}

// Sequoia encrypts plaintext to a fresh key with sq; sq must be installed.
func Sequoia(t testing.TB, plaintext []byte) string {
	t.Helper()
	dir := t.TempDir()
	key := filepath.Join(dir, "key.pgp")
	runTool(t, nil, "sq", "key", "generate", "--userid", "<carol@example.org>", "--export", key)
	cert := filepath.Join(dir, "cert.pgp")
	runTool(t, nil, "sq", "key", "extract-cert", "--output", cert, key)
	return runTool(t, plaintext, "sq", "encrypt", "--recipient-cert", cert)
}

func runTool(t testing.TB, stdin []byte, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, stderr.Bytes())
	}
	return string(out)
}
