package integration

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"filtermail/filter/filtertest"
)

// incomingReinjectService is the name of the incoming reinjection service
// in README.md's master.cf.
const incomingReinjectService = "127.0.0.1:10026"

// mxdelivPort is filtermail_http_port_incoming's default, where nginx
// sends https://{mail_domain}/mxdeliv.
const mxdelivPort = 10082

// nginxRequest is a request as nginx's `proxy_pass
// http://127.0.0.1:10082;` passes it on: HTTP/1.0, its own Host (the
// upstream), Connection and Content-Length first, then the client's
// header fields as they came. A client that spoke HTTP/2 to nginx sends
// them in lower case, and so nginx passes them on.
func nginxRequest(method, path, upstream string, contentLength int, fields ...string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n", method, path, upstream)
	if contentLength >= 0 {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", contentLength)
	}
	for _, f := range fields {
		b.WriteString(f + "\r\n")
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// mxdelivFields are the header fields of a transport's POST /mxdeliv: the
// sender (none for <>) and one X-MAIL-TO per recipient.
func mxdelivFields(from string, to ...string) []string {
	fields := []string{"user-agent: relay-transport/1", "accept: */*"}
	if from != "" {
		fields = append(fields, "x-mail-from: "+from)
	}
	for _, rcpt := range to {
		fields = append(fields, "x-mail-to: "+rcpt)
	}
	return fields
}

// mxdelivResponse is filtermail's answer to a request.
type mxdelivResponse struct {
	Status int
	Body   string
}

func (r mxdelivResponse) String() string { return fmt.Sprintf("%d %q", r.Status, r.Body) }

// roundTrip writes raw on a new connection to addr and reads the response
// to the end of the connection, which the server closes (Connection:
// close). Only what raw holds is sent: a request whose Content-Length
// promises more is left waiting for the rest.
func roundTrip(t testing.TB, addr string, raw []byte) mxdelivResponse {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := conn.Write(raw); err != nil {
		t.Fatalf("writing the request: %v", err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the response body: %v", err)
	}
	// A server that closes a connection with a request body left unread
	// resets it, once the client had time to read the answer.
	if n, err := br.Read(make([]byte, 1)); n != 0 || err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("after the response: %d bytes, %v; want the connection closed", n, err)
	}
	return mxdelivResponse{resp.StatusCode, string(body)}
}

// post sends a whole POST /mxdeliv as nginx forwards it.
func (r *relay) post(from string, to []string, msg []byte) mxdelivResponse {
	r.t.Helper()
	addr := net.JoinHostPort(r.Host, strconv.Itoa(mxdelivPort))
	raw := append(nginxRequest("POST", "/mxdeliv", addr, len(msg), mxdelivFields(from, to...)...), msg...)
	return roundTrip(r.t, addr, raw)
}

// markDisabled gives user@ the marker of a disabled account.
func markDisabled(t *testing.T, r *relay, user string) {
	t.Helper()
	dir := filepath.Join(r.mailDir, user+"@"+domain)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "DISABLED"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// POST /mxdeliv on the relay's incoming filter, as nginx forwards it from
// other relays: judged as incoming SMTP is, and what passes is reinjected
// into Postfix and arrives once.
func TestMxdelivThroughPostfix(t *testing.T) {
	const maxSize = 64 << 10
	r := startRelay(t, "max_message_size = "+strconv.Itoa(maxSize))
	markStrict(t, r)
	markDisabled(t, r, "dora")
	strict, dora := "strict@"+domain, "dora@"+domain
	addr := net.JoinHostPort(r.Host, strconv.Itoa(mxdelivPort))
	want := func(what string, got mxdelivResponse, status int, bodyPrefix string) {
		t.Helper()
		t.Logf("%s: %v", what, got)
		if got.Status != status || !strings.HasPrefix(got.Body, bodyPrefix) {
			t.Errorf("%s: %v, want %d %q", what, got, status, bodyPrefix)
		}
	}
	encrypted := func(to, text string) []byte {
		return filtertest.Encrypted(bob, to, filtertest.GoCryptoV6(t, []byte(text)))
	}

	signed := r.sign("example.net", encrypted(strict, "over HTTP"))
	want("signed, encrypted", r.post(bob, []string{strict}, signed), 200, "250 OK")

	unsigned := encrypted(strict, "over HTTP, unsigned")
	want("unsigned", r.post(bob, []string{strict}, unsigned), 400, "554 5.7.1 No DKIM signature found")

	cleartext := r.sign("example.net", filtertest.Plain(bob, strict, "hi", "cleartext over HTTP"))
	want("cleartext to strict", r.post(bob, []string{strict}, cleartext), 400, "523 ")

	both := r.sign("example.net", encrypted(carol, "to carol and disabled dora"))
	want("one recipient disabled", r.post(bob, []string{carol, dora}, both), 200, "250 OK")

	report := r.sign("example.net", filtertest.Message(
		"From: MAILER-DAEMON@example.net\nTo: "+strict+"\nSubject: Undelivered Mail\nAuto-Submitted: auto-replied\n"+
			"MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=b1",
		"--b1\nContent-Type: text/plain\n\nA report over HTTP.\n--b1\n"+
			"Content-Type: message/delivery-status\n\nReporting-MTA: dns; example.net\n\nFinal-Recipient: rfc822; x@example.net\nAction: failed\nStatus: 5.1.1\n--b1--\n"))
	want("delivery report, no X-MAIL-FROM", r.post("", []string{strict}, report), 200, "250 OK")

	want("GET", roundTrip(t, addr, nginxRequest("GET", "/mxdeliv", addr, -1)), 405, "")
	other := append(nginxRequest("POST", "/other", addr, len(signed), mxdelivFields(bob, strict)...), signed...)
	want("POST /other", roundTrip(t, addr, other), 404, "")

	// A body over max_message_size is refused from its Content-Length:
	// the answer comes with the rest of the body never sent.
	huge := append(nginxRequest("POST", "/mxdeliv", addr, 10*maxSize, mxdelivFields(bob, strict)...), signed[:1024]...)
	want("over max_message_size", roundTrip(t, addr, huge), 413, "552 Message exceeds maximum size")

	// With Postfix's incoming reinjection service gone, the sender is
	// told to try again; once it is back, the retry arrives, once.
	retried := r.sign("example.net", encrypted(strict, "over HTTP, retried"))
	r.setService(incomingReinjectService, false)
	want("reinjection down", r.post(bob, []string{strict}, retried), 400, "451 ")
	r.setService(incomingReinjectService, true)
	want("retry", r.post(bob, []string{strict}, retried), 200, "250 OK")

	r.waitMailbox("strict", 3)
	r.waitQueueEmpty()
	got := r.Mailbox("strict")
	if len(got) != 3 {
		t.Errorf("strict has %d messages, want 3", len(got))
	}
	for what, sent := range map[string][]byte{"signed": signed, "retried": retried} {
		if n := count(got, func(m []byte) bool { return samePayload(m, sent) }); n != 1 {
			t.Errorf("%s: %d copies, want 1", what, n)
		}
	}
	if n := count(got, func(m []byte) bool { return bytes.Contains(m, []byte("A report over HTTP.")) }); n != 1 {
		t.Errorf("the delivery report: %d copies, want 1", n)
	}
	if slices.ContainsFunc(got, func(m []byte) bool {
		return samePayload(m, unsigned) || bytes.Contains(m, []byte("cleartext over HTTP"))
	}) {
		t.Error("a refused message was delivered")
	}
	if c := r.Mailbox("carol"); len(c) != 1 || !samePayload(c[0], both) {
		t.Errorf("carol has %d messages, want the one to her and dora", len(c))
	}
	if n := len(r.Mailbox("dora")); n != 0 {
		t.Errorf("disabled dora has %d messages", n)
	}
}

// count returns how many of msgs match.
func count(msgs [][]byte, match func([]byte) bool) int {
	n := 0
	for _, m := range msgs {
		if match(m) {
			n++
		}
	}
	return n
}
