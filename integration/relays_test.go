package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/smtp"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"filtermail/filter/filtertest"
	"filtermail/internal/dkimtest"
	"filtermail/smtpd/smtpdtest"
)

// Two complete relays on one machine, A and B, each with Postfix, OpenDKIM
// and its three filtermails, find each other through one DNS server:
// mail submitted on A for a user of B is signed by A's OpenDKIM, carried
// by A's transport over HTTPS /mxdeliv, or over SMTP with STARTTLS when
// B's port 443 is closed, and verified by B's incoming filter; cleartext
// never leaves A, and mail that claims to come from A but was not signed
// by A never reaches B's maildirs.
func TestRelaysEndToEnd(t *testing.T) {
	n := newNetwork(t)
	a := n.startPeer("a.example", "alice")
	b := n.startPeer("b.example", "bob")
	from, to := "alice@"+a.Domain, "bob@"+b.Domain
	submit := func(what string, msg []byte, want string) {
		t.Helper()
		if got := smtpdtest.Dial(t, a.submission).Send(from, []string{to}, msg); !strings.HasPrefix(got, want) {
			t.Fatalf("%s: submission on A said %q, want %q", what, got, want)
		}
	}
	mxConnections := b.mxLog("connect from") // the check of Postfix's start

	// 1. Over HTTPS: B's terminator took the POST, B's port 25 took no
	// connection, B's incoming filter found A's signature valid.
	overHTTPS := chatMessage(t, from, to, "over HTTPS /mxdeliv")
	submit("over HTTPS", overHTTPS, "250")
	got := b.waitMailbox("bob", 1)
	a.waitQueueEmpty()
	if !samePayload(got[0], overHTTPS) {
		t.Errorf("over HTTPS: bob's copy lost its payload:\n%s", got[0])
	}
	if r := b.https.waitRequests(1); len(r) != 1 || r[0] != (proxied{"POST", "/mxdeliv", 200}) {
		t.Errorf("over HTTPS: B's port 443 answered %v, want one POST /mxdeliv with 200", r)
	}
	if c := b.mxLog("connect from"); c != mxConnections {
		t.Errorf("over HTTPS: B's port 25 took %d connections", c-mxConnections)
	}
	wantMetric(t, a, transportMetricsPort, "A's transport: delivered over HTTPS", 1,
		"filtermail_transport_deliveries_total", `channel="https"`, `outcome="delivered"`)
	wantMetric(t, b, incomingMetricsPort, "B's incoming filter: valid DKIM signatures", 1,
		"filtermail_dkim_verifications_total", `result="pass"`)
	if !(&senders{t: t, dns: n.dns}).verifies(got[0], a.Domain) {
		t.Error("over HTTPS: bob's copy carries no valid signature of A's")
	}

	// 2. With B's port 443 closed: over SMTP, STARTTLS, to B's port 25.
	b.https.Close()
	overSMTP := chatMessage(t, from, to, "over SMTP with STARTTLS")
	submit("over SMTP", overSMTP, "250")
	got = b.waitMailbox("bob", 2)
	a.waitQueueEmpty()
	received := find(got, overSMTP)
	if received == nil {
		t.Fatal("over SMTP: bob has not got the message")
	}
	b.waitMXLog("connect from", mxConnections+1)
	b.waitMXLog("TLS connection established from", 1)
	if !bytes.Contains(received, []byte("from "+a.Domain+" (")) || !bytes.Contains(received, []byte("(using TLS")) {
		t.Errorf("over SMTP: bob's copy was not received from %s with TLS:\n%s", a.Domain, received)
	}
	wantMetric(t, a, transportMetricsPort, "A's transport: HTTPS tried first", 1,
		"filtermail_transport_https_unavailable_total")
	wantMetric(t, a, transportMetricsPort, "A's transport: delivered over SMTP", 1,
		"filtermail_transport_deliveries_total", `channel="smtp"`, `outcome="delivered"`)
	wantMetric(t, b, incomingMetricsPort, "B's incoming filter: valid DKIM signatures", 2,
		"filtermail_dkim_verifications_total", `result="pass"`)
	if !(&senders{t: t, dns: n.dns}).verifies(received, a.Domain) {
		t.Error("over SMTP: bob's copy carries no valid signature of A's")
	}

	// 3. Cleartext is refused at submission and never leaves A: it is
	// never queued, so A's transport never sees it (checked below).
	submit("cleartext", filtertest.Plain(from, to, "hi", "cleartext words"), "523")

	// 4. Mail that claims to be from A but was not signed by A, sent by
	// the test as another relay: unsigned to B's port 25, and over HTTPS,
	// with B's port 443 open again, signed by a key of A's domain that A
	// does not publish, and by another domain's published key.
	b.startHTTPS()
	forged := chatMessage(t, from, to, "forged, unsigned")
	if got := sendSTARTTLS(t, b, from, to, forged); !strings.HasPrefix(got, "554 5.7.1 No DKIM signature found") {
		t.Errorf("forged, unsigned, to port 25: %q, want 554 5.7.1 No DKIM signature found", got)
	}
	unpublished := dkimtest.NewKey(t, dkimtest.RSA, a.Domain, "forged")
	forgedKey := dkimtest.SignOpenDKIM(t, unpublished, chatMessage(t, from, to, "forged, A's unpublished key"), "relaxed/simple")
	other := dkimtest.NewKey(t, dkimtest.RSA, "evil.example", dkimSelector)
	n.dns.TXT(other.Name(), other.TXT())
	forgedOther := dkimtest.SignOpenDKIM(t, other, chatMessage(t, from, to, "forged, signed by evil.example"), "relaxed/simple")
	for what, msg := range map[string][]byte{"A's unpublished key": forgedKey, "another domain's key": forgedOther} {
		status, body := postHTTPS(t, b, from, to, msg)
		if status != 400 || !strings.HasPrefix(body, "554 5.7.1 No valid DKIM signature found") {
			t.Errorf("forged, signed by %s, over HTTPS: %d %q, want 400 554 5.7.1 No valid DKIM signature found", what, status, body)
		}
	}
	wantMetric(t, b, incomingMetricsPort, "B's incoming filter: messages without a signature", 1,
		"filtermail_dkim_verifications_total", `result="none"`)
	wantMetric(t, b, incomingMetricsPort, "B's incoming filter: messages without a valid signature", 2,
		"filtermail_dkim_verifications_total", `result="fail"`)

	a.waitQueueEmpty()
	b.waitQueueEmpty()
	got = b.Mailbox("bob")
	if len(got) != 2 {
		t.Errorf("bob has %d messages, want the 2 signed by A", len(got))
	}
	for _, m := range got {
		if bytes.Contains(m, []byte("cleartext words")) {
			t.Error("bob got the cleartext")
		}
	}
	for what, msg := range map[string][]byte{"unsigned": forged, "A's unpublished key": forgedKey, "another domain's key": forgedOther} {
		if find(got, msg) != nil {
			t.Errorf("bob got a forged message (%s)", what)
		}
	}
	wantMetric(t, a, transportMetricsPort, "A's transport: recipients it took", 2,
		"filtermail_transport_deliveries_total")
	if r := b.https.waitRequests(2); len(r) != 2 || r[0].Status != 400 || r[1].Status != 400 {
		t.Errorf("B's port 443 answered %v, want the test's 2 forged POSTs", r)
	}
}

// chatMessage returns an encrypted message as Delta Chat sends it: with
// Date and Message-ID, which OpenDKIM signs.
func chatMessage(t *testing.T, from, to, text string) []byte {
	t.Helper()
	id := make([]byte, 12)
	rand.Read(id)
	header := fmt.Sprintf("Date: %s\r\nMessage-ID: <%x@%s>\r\n",
		time.Now().Format(time.RFC1123Z), id, from[strings.LastIndexByte(from, '@')+1:])
	return append([]byte(header), filtertest.Encrypted(from, to, filtertest.GoCryptoV6(t, []byte(text)))...)
}

// find returns the message of msgs that holds sent's payload, or nil.
func find(msgs [][]byte, sent []byte) []byte {
	for _, m := range msgs {
		if samePayload(m, sent) {
			return m
		}
	}
	return nil
}

// wantMetric checks a metric of p's daemon on port.
func wantMetric(t *testing.T, p *peer, port int, what string, want float64, name string, labels ...string) {
	t.Helper()
	if got := p.metric(port, name, labels...); got != want {
		t.Errorf("%s: %s%v is %v, want %v", what, name, labels, got, want)
	}
}

// sendSTARTTLS sends msg to p's port 25 as another relay would, with
// STARTTLS, and returns the reply at the end of DATA.
func sendSTARTTLS(t *testing.T, p *peer, from, to string, msg []byte) string {
	t.Helper()
	c, err := smtp.Dial(p.mx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("forger.example"); err != nil {
		t.Fatal(err)
	}
	if err := c.StartTLS(&tls.Config{ServerName: p.MX, RootCAs: p.net.ca.Pool}); err != nil {
		t.Fatalf("STARTTLS: %v", err)
	}
	if err := c.Mail(from); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt(to); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(msg); err != nil {
		t.Fatal(err)
	}
	err = w.Close()
	var reply *textproto.Error
	switch {
	case err == nil:
		return "250"
	case errors.As(err, &reply):
		return fmt.Sprintf("%d %s", reply.Code, reply.Msg)
	}
	t.Fatalf("end of DATA: %v", err)
	return ""
}

// postHTTPS posts msg to https://{p.MX}/mxdeliv as another relay's
// transport would, and returns the status and body of the answer.
func postHTTPS(t *testing.T, p *peer, from, to string, msg []byte) (int, string) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: p.net.ca.Pool},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, p.https.Addr)
		},
	}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequest("POST", "https://"+p.MX+"/mxdeliv", bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Mail-From", from)
	req.Header.Set("X-Mail-To", to)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}
