package integration

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"filtermail/internal/daemontest"
	"filtermail/internal/dnstest"
	"filtermail/internal/relaytest"
	"filtermail/internal/testnet"
)

// The transport's and the incoming filter's default ports.
const (
	transportPort        = 10083 // filtermail_lmtp_port_transport
	transportMetricsPort = 10086 // filtermail_metrics_port_transport
	incomingMetricsPort  = 10085 // filtermail_metrics_port_incoming
)

// network is the part of the internet that complete relays in a test
// share: one DNS server, where each relay's domain has its MX record, its
// mail exchanger's address and its DKIM key, and one certificate
// authority, which issued each relay's certificate and which every
// relay's transport trusts, as relays trust the public ones
// (SSL_CERT_FILE, where Go finds the system's roots).
type network struct {
	t   *testing.T
	dns *dnstest.Server
	ca  *relaytest.CA
}

func newNetwork(t *testing.T) *network {
	t.Helper()
	ca, err := relaytest.NewCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &network{t: t, dns: dnstest.Start(t), ca: ca}
}

// peer is a complete relay of a network, on a loopback host of its own,
// wired as chatmail relays wire Postfix, OpenDKIM, nginx and filtermail:
//
//   - port 25 (smtp): STARTTLS required, with a certificate for the mail
//     exchanger's name, through the incoming filter (smtpd_proxy_filter);
//   - submission: through the outgoing filter, which reinjects on 10025,
//     where OpenDKIM signs as milter; mail for other domains then goes
//     to the transport over LMTP (default_transport lmtp-filtermail);
//   - the incoming filter reinjects on 10026, whence mail is delivered
//     to the maildirs;
//   - port 443: a TLS terminator in nginx's place, /mxdeliv to the
//     incoming filter.
//
// Unlike a relay's, submission takes mail from loopback without TLS and
// SASL, as in the other tests, and Postfix runs no chroot.
type peer struct {
	*postfix
	net        *network
	Domain     string // its mail domain
	MX         string // its mail exchanger's name: mx.{Domain}
	submission string // Postfix's submission service
	mx         string // Postfix's smtp service, port 25
	cert       tls.Certificate

	outgoing, incoming, transport *daemontest.Daemon
	milter                        *milter
	https                         *terminator // port 443; closed with its Close
}

// withOptions adds the -o options to a service of master.cf.
func withOptions(s service, opts ...string) service {
	for _, o := range opts {
		s.Entry += "  -o " + o + "\n"
	}
	return s
}

// startPeer starts a complete relay of domain with maildirs for users,
// and publishes its records. It stops when the test ends.
func (n *network) startPeer(domain string, users ...string) *peer {
	t := n.t
	t.Helper()
	host := testnet.Host(t)
	p := &peer{net: n, Domain: domain, MX: "mx." + domain}
	dir, err := os.MkdirTemp("", "filtermail-peer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755) // Postfix's processes connect to the milter here

	p.cert, err = n.ca.Certificate(p.MX)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "mx.pem"), filepath.Join(dir, "mx.key")
	writePEM(t, certFile, keyFile, p.cert)

	p.milter = startMilter(t, dir, domain)
	n.dns.MX(domain, 10, p.MX)
	n.dns.A(p.MX, host)
	n.dns.TXT(dkimSelector+"._domainkey."+domain, p.milter.TXT)

	milter := "unix:" + p.milter.Socket
	var services []service
	for _, s := range readmeServices(t, host) {
		switch s.Name {
		case "smtp":
			s = withOptions(s, "syslog_name=postfix/mx",
				"smtpd_tls_security_level=encrypt",
				"smtpd_tls_mandatory_protocols=>=TLSv1.2",
				"smtpd_tls_cert_file="+certFile,
				"smtpd_tls_key_file="+keyFile,
				"smtpd_tls_loglevel=1",
				"smtpd_tls_received_header=yes",
				"smtpd_relay_restrictions=reject_unauth_destination")
		case "submission":
			s = withOptions(s, "syslog_name=postfix/submission")
		case reinjectService:
			s = withOptions(s, "syslog_name=postfix/reinject",
				"milter_macro_daemon_name=ORIGINATING",
				"smtpd_milters="+milter)
		case incomingReinjectService:
			s = withOptions(s, "syslog_name=postfix/reinject_incoming")
		default:
			continue // the after-queue service is not a relay's
		}
		services = append(services, s)
	}
	services = append(services,
		service{Name: "lmtp-filtermail", Entry: "lmtp-filtermail unix - - n - 500 lmtp\n" +
			"  -o syslog_name=postfix/lmtp-filtermail\n  -o lmtp_header_checks=\n  -o lmtp_tls_security_level=none\n"},
		service{Name: "tlsmgr", Entry: "tlsmgr unix - - n 1000? 1 tlsmgr\n"},
	)
	p.postfix = startPostfix(t, postfixConfig{
		Host:      host,
		Domain:    domain,
		Hostname:  p.MX,
		Mailboxes: users,
		Services:  services,
		Main: []string{
			fmt.Sprintf("default_transport = lmtp-filtermail:inet:[%s]:%d", host, transportPort),
			"lmtp-filtermail_initial_destination_concurrency = 10000",
			"lmtp-filtermail_destination_concurrency_limit = 10000",
			// Bounces are signed too.
			"non_smtpd_milters = " + milter,
			"internal_mail_filter_classes = bounce",
			"milter_macro_daemon_name = ORIGINATING",
		},
	})
	p.submission, p.mx = p.Addr("submission"), p.Addr("smtp")

	params := []string{
		"mail_domain = " + domain,
		"mailboxes_dir = " + p.mailDir,
		"filtermail_host = " + host,
		"postfix_host = " + host,
		"filtermail_dns_resolver = " + n.dns.Addr(),
	}
	p.outgoing = daemontest.Start(t, binary, daemontest.Options{Mode: "outgoing", Params: params})
	p.incoming = daemontest.Start(t, binary, daemontest.Options{Mode: "incoming", Params: params,
		Env: []string{"FILTERMAIL_SKIP_DKIM="}})
	if strings.Contains(p.incoming.Log(), "DKIM verification DISABLED") {
		t.Fatal("the incoming filter runs without DKIM")
	}
	p.transport = daemontest.Start(t, binary, daemontest.Options{Mode: "transport", Params: params,
		Env: []string{"SSL_CERT_FILE=" + n.ca.CertFile}})
	p.startHTTPS()

	// Postfix's start was checked by connecting to each port; the
	// connection to port 25 is over once its disconnect is logged.
	for deadline := time.Now().Add(20 * time.Second); p.mxLog("disconnect from") == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("Postfix logged no end of the connection that checked port 25")
		}
	}
	return p
}

// startHTTPS opens port 443 again, with a new terminator.
func (p *peer) startHTTPS() {
	p.https = startTerminator(p.t, p.Host, p.cert, net.JoinHostPort(p.Host, strconv.Itoa(mxdelivPort)))
}

// writePEM writes the certificate and its key, for Postfix.
func writePEM(t *testing.T, certFile, keyFile string, cert tls.Certificate) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	var certs []byte
	for _, c := range cert.Certificate {
		certs = append(certs, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c})...)
	}
	if err := os.WriteFile(certFile, certs, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// mxLog counts the lines that the smtpd of port 25 logged with what in
// them.
func (p *peer) mxLog(what string) int {
	n := 0
	for _, line := range strings.Split(p.Log(), "\n") {
		if strings.Contains(line, " postfix/mx/smtpd[") && strings.Contains(line, what) {
			n++
		}
	}
	return n
}

// waitMXLog waits until the smtpd of port 25 has logged n lines with what
// in them.
func (p *peer) waitMXLog(what string, n int) {
	p.t.Helper()
	for deadline := time.Now().Add(20 * time.Second); p.mxLog(what) < n; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			p.t.Fatalf("port 25's smtpd logged %d lines with %q, want %d", p.mxLog(what), what, n)
		}
	}
}

// metric returns the sum of the series of name whose labels include all
// of labels (such as `result="pass"`), as the daemon serving /metrics on
// port of the peer's host says now.
func (p *peer) metric(port int, name string, labels ...string) float64 {
	p.t.Helper()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 20 * time.Second}
	resp, err := client.Get(fmt.Sprintf("http://%s/metrics", net.JoinHostPort(p.Host, strconv.Itoa(port))))
	if err != nil {
		p.t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	sum, found := 0.0, false
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		series, value, _ := strings.Cut(line, " ")
		match := true
		for _, l := range labels {
			match = match && strings.Contains(series, l)
		}
		if !match {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			p.t.Fatalf("metrics: %q: %v", line, err)
		}
		sum, found = sum+v, true
	}
	if err := sc.Err(); err != nil {
		p.t.Fatalf("metrics: %v", err)
	}
	if !found {
		p.t.Fatalf("metrics on port %d have no %s with %v", port, name, labels)
	}
	return sum
}
