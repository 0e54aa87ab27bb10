package integration

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"filtermail/internal/logtest"
)

// dkimSelector is the selector relays sign with: the relay's deployer
// makes its key with opendkim-genkey -s opendkim.
const dkimSelector = "opendkim"

// milter is OpenDKIM running as Postfix's milter, as on a relay: Postfix's
// outgoing reinjection service hands it every message that passed the
// outgoing filter, with the daemon name ORIGINATING, and it signs those of
// the relay's domain. It listens on a UNIX socket in a folder of the
// test's own, which Postfix's processes (not chrooted here) can reach.
type milter struct {
	Socket string // the UNIX socket Postfix connects to
	TXT    string // the key record to publish at opendkim._domainkey.{domain}

	cmd    *exec.Cmd
	exited chan struct{}
	log    logtest.Buffer
}

// milterConf is the relay's opendkim.conf for signing, with its paths in
// dir. The relay leaves Mode at its default, sign and verify; this one
// only signs, as the relay's does for every message it is given (all come
// from ORIGINATING), so that it never asks a DNS server of the internet.
// The relay's key is in /etc/dkimkeys; this one is in a folder under
// /tmp, which anyone may write to, and OpenDKIM refuses such keys unless
// told not to.
const milterConf = `Syslog no
Mode s
RequireSafeKeys false
Canonicalization relaxed/simple
SignHeaders *,+autocrypt,+content-type
OversignHeaders from,reply-to,subject,date,to,cc,resent-date,resent-from,resent-sender,resent-to,resent-cc,in-reply-to,references,list-id,list-help,list-unsubscribe,list-subscribe,list-post,list-owner,list-archive,autocrypt
KeyTable {{.Dir}}/KeyTable
SigningTable refile:{{.Dir}}/SigningTable
Socket local:{{.Dir}}/opendkim.sock
UMask 000
MTA ORIGINATING
InternalHosts -
`

// startMilter makes a DKIM key for domain in dir (a folder Postfix's
// users can enter) and starts OpenDKIM to sign with it. It is stopped when
// the test ends.
func startMilter(t *testing.T, dir, domain string) *milter {
	t.Helper()
	if _, err := exec.LookPath("opendkim"); err != nil {
		t.Fatal("opendkim is not installed; scripts/test.sh installs it")
	}
	m := &milter{Socket: filepath.Join(dir, "opendkim.sock"), exited: make(chan struct{})}
	if out, err := exec.Command("opendkim-genkey", "-b", "2048", "-D", dir, "-d", domain, "-s", dkimSelector).CombinedOutput(); err != nil {
		t.Fatalf("opendkim-genkey: %v\n%s", err, out)
	}
	zone, err := os.ReadFile(filepath.Join(dir, dkimSelector+".txt"))
	if err != nil {
		t.Fatal(err)
	}
	m.TXT = keyRecord(string(zone))
	if !strings.Contains(m.TXT, "p=") {
		t.Fatalf("opendkim-genkey wrote no key record: %q", zone)
	}
	name := dkimSelector + "._domainkey." + domain
	key := filepath.Join(dir, dkimSelector+".private")
	for file, content := range map[string]string{
		"KeyTable":     fmt.Sprintf("%s %s:%s:%s\n", name, domain, dkimSelector, key),
		"SigningTable": fmt.Sprintf("*@%s %s\n", domain, name),
	} {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(dir, "opendkim.conf")
	writeTemplate(t, conf, milterConf, map[string]string{"Dir": dir})

	m.cmd = exec.Command("opendkim", "-f", "-x", conf)
	m.cmd.Stdout, m.cmd.Stderr = &m.log, &m.log
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("starting opendkim: %v", err)
	}
	go func() { m.cmd.Wait(); close(m.exited) }()
	t.Cleanup(func() {
		m.stop()
		if t.Failed() {
			t.Logf("OpenDKIM log:\n%s", m.log.String())
		}
	})
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := net.Dial("unix", m.Socket)
		if err == nil {
			c.Close()
			return m
		}
		select {
		case <-m.exited:
			t.Fatalf("opendkim exited: %s", m.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("opendkim does not listen on %s: %v\n%s", m.Socket, err, m.log.String())
		}
	}
}

var quotedString = regexp.MustCompile(`"([^"]*)"`)

// keyRecord returns the record in the zone file stub that opendkim-genkey
// writes: its quoted strings joined.
func keyRecord(zone string) string {
	var b strings.Builder
	for _, m := range quotedString.FindAllStringSubmatch(zone, -1) {
		b.WriteString(m[1])
	}
	return b.String()
}

// stop ends OpenDKIM with SIGTERM, or SIGKILL 10 s later, and waits for
// it to exit.
func (m *milter) stop() {
	if err := m.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		m.cmd.Process.Kill()
	}
	select {
	case <-m.exited:
	case <-time.After(10 * time.Second):
		m.cmd.Process.Kill()
		<-m.exited
	}
}
