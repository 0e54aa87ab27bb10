// Package dkimtest makes DKIM keys and signed messages for tests, with
// signers no one here wrote: OpenDKIM (the opendkim filter in its test mode,
// as chatmail relays run it) and dkimpy (dkimsign, from python3-dkim). Keys
// come from opendkim-genkey (RSA) and openssl (Ed25519).
//
// It installs nothing: scripts/test.sh installs the Debian packages
// opendkim, opendkim-tools, python3-dkim, openssl and faketime.
//
// OpenDKIM 2.11 (Debian 12) signs with rsa-sha256 and ed25519-sha256
// (RFC 8463), both canonicalizations; but its Ed25519 signatures with the
// simple header canonicalization are invalid (OpenDKIM's own verifier
// refuses them, as dkimpy and go-msgauth do). Its opendkim-testmsg tool
// always signs rsa-sha1 and relaxed/simple, which verifiers refuse
// (RFC 8301), so the filter is used instead. dkimpy signs with both
// algorithms and canonicalizations.
package dkimtest

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Algorithm is a DKIM signing algorithm.
type Algorithm int

const (
	RSA     Algorithm = iota + 1 // rsa-sha256, 2048-bit keys
	Ed25519                      // ed25519-sha256 (RFC 8463)
)

// Algorithms lists every Algorithm.
var Algorithms = []Algorithm{RSA, Ed25519}

func (a Algorithm) String() string {
	switch a {
	case RSA:
		return "rsa-sha256"
	case Ed25519:
		return "ed25519-sha256"
	}
	return fmt.Sprintf("Algorithm(%d)", int(a))
}

// Canonicalizations lists the header/body canonicalizations signers are
// asked for.
var Canonicalizations = []string{"relaxed/relaxed", "simple/simple"}

// toolTimeout bounds one run of a tool, so that a hung tool fails the test
// instead of holding it until the test binary's own timeout.
const toolTimeout = 2 * time.Minute

// Key is a signing key and its public record.
type Key struct {
	Algorithm Algorithm
	Domain    string
	Selector  string

	pem  string // PKCS#8 private key, read by OpenDKIM and (RSA) dkimpy
	seed string // Ed25519: the raw private key in base64, dkimpy's format
	txt  string
}

// NewKey makes a key for selector._domainkey.domain.
func NewKey(t testing.TB, alg Algorithm, domain, selector string) *Key {
	t.Helper()
	dir := t.TempDir()
	k := &Key{Algorithm: alg, Domain: domain, Selector: selector}
	switch alg {
	case RSA:
		run(t, nil, "opendkim-genkey", "-b", "2048", "-d", domain, "-s", selector, "-D", dir)
		k.pem = filepath.Join(dir, selector+".private")
		zone, err := os.ReadFile(filepath.Join(dir, selector+".txt"))
		if err != nil {
			t.Fatal(err)
		}
		k.txt = zoneTXT(t, string(zone))
	case Ed25519:
		k.pem = filepath.Join(dir, "ed25519.pem")
		run(t, nil, "openssl", "genpkey", "-algorithm", "ed25519", "-out", k.pem)
		// The DER forms end with the raw 32-byte keys.
		priv := run(t, nil, "openssl", "pkey", "-in", k.pem, "-outform", "DER")
		pub := run(t, nil, "openssl", "pkey", "-in", k.pem, "-pubout", "-outform", "DER")
		if len(priv) != 48 || len(pub) != 44 {
			t.Fatalf("openssl: Ed25519 DER keys of %d and %d bytes, want 48 and 44", len(priv), len(pub))
		}
		k.seed = filepath.Join(dir, "ed25519.seed")
		if err := os.WriteFile(k.seed, []byte(base64.StdEncoding.EncodeToString(priv[16:])+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		k.txt = "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub[12:])
	default:
		t.Fatalf("dkimtest: unknown algorithm %v", alg)
	}
	return k
}

var quoted = regexp.MustCompile(`"([^"]*)"`)

// zoneTXT returns the record in the zone file stub opendkim-genkey writes:
// its quoted strings joined.
func zoneTXT(t testing.TB, zone string) string {
	var b strings.Builder
	for _, m := range quoted.FindAllStringSubmatch(zone, -1) {
		b.WriteString(m[1])
	}
	if !strings.Contains(b.String(), "p=") {
		t.Fatalf("opendkim-genkey wrote no key record: %q", zone)
	}
	return b.String()
}

// Name returns the name of the key record: selector._domainkey.domain.
func (k *Key) Name() string { return k.Selector + "._domainkey." + k.Domain }

// TXT returns the key record to publish at Name.
func (k *Key) TXT() string { return k.txt }

// Options change how a message is signed.
type Options struct {
	// Canon is header/body canonicalization: "relaxed/relaxed",
	// "simple/simple", ...
	Canon string
	// BodyLength adds an l= tag that covers the whole body.
	BodyLength bool
	// TTL adds x= that long after t= (OpenDKIM only).
	TTL time.Duration
	// Backdate signs as if it were that long ago (OpenDKIM only, run
	// under faketime): with TTL, a signature that has expired.
	Backdate time.Duration
}

// SignOpenDKIM returns msg signed by OpenDKIM with key and canon.
func SignOpenDKIM(t testing.TB, key *Key, msg []byte, canon string) []byte {
	t.Helper()
	return SignOpenDKIMWith(t, key, msg, Options{Canon: canon})
}

// SignOpenDKIMWith returns msg signed by OpenDKIM with key. OpenDKIM signs
// whatever the From domain: the signature's d= is key.Domain.
//
// The opendkim filter in test mode (-t) reads the message and prints the
// DKIM-Signature field it would have the MTA insert, its lines ended with
// LF; the MTA would send them with CRLF, and so the field is put in front
// of msg.
func SignOpenDKIMWith(t testing.TB, key *Key, msg []byte, o Options) []byte {
	t.Helper()
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	keyTable := write("keytable", fmt.Sprintf("key %s:%s:%s\n", key.Domain, key.Selector, key.pem))
	signingTable := write("signingtable", "* key\n")
	conf := []string{
		"Mode s",
		"Syslog no",
		"RequireSafeKeys false", // the key is in a temporary folder
		"KeyTable " + keyTable,
		"SigningTable refile:" + signingTable,
		"Canonicalization " + canonOf(t, o.Canon),
		"SignatureAlgorithm " + key.Algorithm.String(),
	}
	if o.TTL > 0 {
		conf = append(conf, fmt.Sprintf("SignatureTTL %d", int(o.TTL.Seconds())))
	}
	if o.BodyLength {
		// Bodies shorter than this are signed whole, with l=.
		conf = append(conf, "MaximumSignedBytes 1000000000")
	}
	confFile := write("opendkim.conf", strings.Join(conf, "\n")+"\n")

	args := []string{"opendkim", "-x", confFile, "-t", "-"}
	if o.Backdate > 0 {
		args = append([]string{"faketime", "-f", fmt.Sprintf("-%d", int(o.Backdate.Seconds()))}, args...)
	}
	out := run(t, msg, args[0], args[1:]...)
	i := bytes.Index(out, []byte("DKIM-Signature:"))
	if i < 0 {
		t.Fatalf("opendkim signed nothing; it printed %q", out)
	}
	field := out[i:]
	// The field ends where a line starts with neither a space nor a tab.
	for j := 0; j < len(field); j++ {
		if field[j] == '\n' && (j+1 == len(field) || field[j+1] != ' ' && field[j+1] != '\t') {
			field = field[:j+1]
			break
		}
	}
	return append(crlf(field), msg...)
}

// SignDkimpy returns msg signed by dkimpy's dkimsign with key and canon.
func SignDkimpy(t testing.TB, key *Key, msg []byte, canon string) []byte {
	t.Helper()
	return SignDkimpyWith(t, key, msg, Options{Canon: canon})
}

// dkimpyLength signs the message on standard input with dkimpy's library,
// which can add l= (its dkimsign tool cannot), and writes the
// DKIM-Signature field.
const dkimpyLength = `import sys, dkim
sel, dom, keyfile, hcanon, bcanon, alg = [a.encode() for a in sys.argv[1:7]]
msg = sys.stdin.buffer.read()
with open(keyfile, "rb") as f:
    key = f.read()
sys.stdout.buffer.write(dkim.sign(msg, sel, dom, key, canonicalize=(hcanon, bcanon), signature_algorithm=alg, length=True))
`

// SignDkimpyWith returns msg signed by dkimpy with key. dkimpy cannot set
// x=: TTL and Backdate fail the test.
func SignDkimpyWith(t testing.TB, key *Key, msg []byte, o Options) []byte {
	t.Helper()
	if o.TTL != 0 || o.Backdate != 0 {
		t.Fatal("dkimtest: dkimpy cannot set x=")
	}
	hcanon, bcanon, _ := strings.Cut(canonOf(t, o.Canon), "/")
	keyFile := key.pem
	if key.Algorithm == Ed25519 {
		keyFile = key.seed
	}
	var field []byte
	if o.BodyLength {
		field = run(t, msg, "/usr/bin/python3", "-c", dkimpyLength, key.Selector, key.Domain, keyFile, hcanon, bcanon, key.Algorithm.String())
	} else {
		out := run(t, msg, "dkimsign", "--hcanon", hcanon, "--bcanon", bcanon, "--signalg", key.Algorithm.String(), key.Selector, key.Domain, keyFile)
		// dkimsign writes the field, then the message as it read it.
		if !bytes.HasSuffix(out, msg) {
			t.Fatalf("dkimsign changed the message: %q", out)
		}
		field = out[:len(out)-len(msg)]
	}
	if !bytes.HasPrefix(field, []byte("DKIM-Signature:")) {
		t.Fatalf("dkimpy signed nothing; it wrote %q", field)
	}
	return append(crlf(field), msg...)
}

// canonOf checks a canonicalization given as header/body.
func canonOf(t testing.TB, canon string) string {
	t.Helper()
	h, b, ok := strings.Cut(canon, "/")
	valid := func(c string) bool { return c == "relaxed" || c == "simple" }
	if !ok || !valid(h) || !valid(b) {
		t.Fatalf("dkimtest: canonicalization %q, want header/body, each relaxed or simple", canon)
	}
	return canon
}

// crlf ends every line of a header field with CRLF.
func crlf(field []byte) []byte {
	field = bytes.ReplaceAll(field, []byte("\r\n"), []byte("\n"))
	field = bytes.ReplaceAll(field, []byte("\n"), []byte("\r\n"))
	if !bytes.HasSuffix(field, []byte("\r\n")) {
		field = append(field, "\r\n"...)
	}
	return field
}

// run runs a tool with stdin and returns what it wrote to standard output;
// anything on standard error, or a failure, fails the test.
func run(t testing.TB, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s is not installed; scripts/test.sh installs it", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.Bytes())
	}
	return stdout.Bytes()
}
