package main

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"filtermail/internal/daemontest"
	"filtermail/internal/dnstest"
	"filtermail/internal/relaytest"
	"filtermail/internal/testnet"
)

// The transport process: LMTP on its port, /metrics and /healthz on its
// metrics port with every transport series at 0 from the start, a
// delivery to another relay over HTTPS found through
// filtermail_dns_resolver and trusted through SSL_CERT_FILE, and a clean
// stop.
func TestTransportMode(t *testing.T) {
	ca, err := relaytest.NewCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dns := dnstest.Start(t)
	host := testnet.Host(t)
	dns.MX("other.example", 10, "mx.other.example")
	dns.A("mx.other.example", host)
	cert, err := ca.Certificate("mx.other.example")
	if err != nil {
		t.Fatal(err)
	}
	remote := relaytest.StartHTTPS(t, host, cert)

	d := startDaemonWith(t, daemontest.Options{Env: []string{"SSL_CERT_FILE=" + ca.CertFile}}, "transport", 10025,
		"filtermail_dns_resolver = "+dns.Addr())
	lmtp := net.JoinHostPort("127.0.0.1", strconv.Itoa(d.port))
	metricsURL := "http://127.0.0.1:" + strconv.Itoa(d.httpPort)
	want := "Transport: LMTP on " + lmtp + ", metrics on " + metricsURL
	if !strings.Contains(d.Log(), want+"; entering serving loop.") {
		t.Errorf("log %q, want the serving line %q", d.Log(), want)
	}
	body := get(t, metricsURL+"/metrics", 200)
	for _, series := range []string{
		`filtermail_transport_deliveries_total{channel="https",direction="transport",outcome="delivered"} 0`,
		`filtermail_transport_deliveries_total{channel="none",direction="transport",outcome="bounced"} 0`,
		`filtermail_transport_busy_total{direction="transport",limit="memory"} 0`,
		`filtermail_transport_smtp_sessions_total{direction="transport",tls_policy="dane"} 0`,
		`filtermail_transport_deliveries_in_flight{direction="transport"} 0`,
	} {
		if !strings.Contains(body, series) {
			t.Errorf("/metrics lacks %s", series)
		}
	}
	get(t, metricsURL+"/healthz", 200)
	get(t, metricsURL+"/", 404)

	conn, err := net.Dial("tcp", lmtp)
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClientLMTP(conn)
	defer c.Close()
	msg := "From: <alice@chat.example.org>\r\nTo: <bob@other.example>\r\n\r\nhello\r\n"
	if err := c.SendMail("alice@chat.example.org", []string{"bob@other.example"}, strings.NewReader(msg)); err != nil {
		t.Fatalf("LMTP: %v", err)
	}
	if reqs := remote.Requests(); len(reqs) != 1 || string(reqs[0].Body) != msg {
		t.Errorf("the other relay got %d requests", len(reqs))
	}
	if body := get(t, metricsURL+"/metrics", 200); !strings.Contains(body,
		`filtermail_transport_deliveries_total{channel="https",direction="transport",outcome="delivered"} 1`) {
		t.Error("the delivery was not counted")
	}
	if !strings.Contains(d.Log(), "Transport: delivered 250 2.0.0 (1) over HTTPS") {
		t.Errorf("no log line for the delivery: %s", d.Log())
	}
	if strings.Contains(d.Log(), "bob@") || strings.Contains(d.Log(), "alice@") {
		t.Errorf("an address in the log: %s", d.Log())
	}
	c.Quit()
	d.Stop()
	if code := d.Cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
}

// get fetches url and checks its status.
func get(t *testing.T, url string, status int) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		t.Errorf("GET %s: %d, want %d", url, resp.StatusCode, status)
	}
	return string(body)
}
