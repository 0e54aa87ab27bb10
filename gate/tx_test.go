package gate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"filtermail/dkim"
	"filtermail/filter"
	"filtermail/filter/filtertest"
	"filtermail/internal/testnet"
	"filtermail/metrics"
	"filtermail/postfix"
	"filtermail/smtpd/smtpdtest"
)

// origin is a Verifier that answers one outcome and remembers the domain
// it was asked about.
type origin struct {
	outcome dkim.Outcome
	domain  string
}

func (o *origin) Verify(_ context.Context, msg io.Reader, domain string) dkim.Result {
	io.Copy(io.Discard, msg)
	o.domain = domain
	return dkim.Result{Outcome: o.outcome, Err: errors.New(string(o.outcome))}
}

// send runs one transaction through g and returns the reply at its end,
// or the first refusal before it; "" for accepted.
func send(t *testing.T, g *Gate, from string, to []string, msg []byte) string {
	t.Helper()
	tx, err := g.Mail(context.Background(), from, nil)
	if err == nil {
		defer tx.Abort()
		for _, rcpt := range to {
			if err = tx.Rcpt(rcpt); err != nil {
				break
			}
		}
	}
	if err == nil {
		err = tx.Data(bytes.NewReader(msg))
	}
	if err == nil {
		return ""
	}
	var reply *smtp.SMTPError
	if !errors.As(err, &reply) {
		t.Fatalf("error %v is not a reply", err)
	}
	return replyText(reply)
}

// The incoming rules in their order, each with its reply, and what goes
// on to Postfix.
func TestSubmitIncoming(t *testing.T) {
	const (
		alice  = "alice@chat.example.org"
		strict = "strict@chat.example.org"
		gone   = "gone@chat.example.org"
		bob    = "bob@example.net"
	)
	dir := t.TempDir()
	for addr, marker := range map[string]string{strict: "enforceE2EEincoming", gone: "DISABLED"} {
		os.MkdirAll(filepath.Join(dir, addr), 0o755)
		os.WriteFile(filepath.Join(dir, addr, marker), nil, 0o644)
	}
	encrypted := filtertest.Encrypted(bob, strict, filtertest.GoCryptoV6(t, []byte("hi")))
	plain := filtertest.Plain(bob, strict, "hi", "hello")
	tests := []struct {
		name    string
		from    string
		to      []string
		msg     []byte
		dkim    dkim.Outcome
		postfix smtpdtest.Mode
		reply   string // "" for accepted
		sentTo  []string
		sentAs  string
	}{
		{"encrypted, signed", bob, []string{strict}, encrypted, dkim.Pass, smtpdtest.Accept, "", []string{strict}, bob},
		{"bounce", "", []string{strict}, encrypted, dkim.Pass, smtpdtest.Accept, "", []string{strict}, ""},
		{"forwarded", "srs0=x@fwd.example", []string{strict}, encrypted, dkim.Pass, smtpdtest.Accept, "", []string{strict}, ""},
		{"disabled dropped", bob, []string{gone, strict}, encrypted, dkim.Pass, smtpdtest.Accept, "", []string{strict}, bob},
		{"all disabled", bob, []string{gone}, encrypted, dkim.Fail, smtpdtest.Accept, "", nil, ""},
		{"IP literal From", bob, []string{strict}, encrypted, dkim.Skipped, smtpdtest.Accept, "", []string{strict}, bob},
		{"no signature", bob, []string{strict}, encrypted, dkim.NoSignature, smtpdtest.Accept, "554 5.7.1 No DKIM signature found", nil, ""},
		{"bad signature", bob, []string{strict}, encrypted, dkim.Fail, smtpdtest.Accept, "554 5.7.1 No valid DKIM signature found", nil, ""},
		{"key lookup failed", bob, []string{strict}, encrypted, dkim.TempFail, smtpdtest.Accept, "451 4.7.5", nil, ""},
		{"cleartext to strict", bob, []string{strict}, plain, dkim.Fail, smtpdtest.Accept, "523 Encryption Needed: Invalid Unencrypted Mail", nil, ""},
		{"no From", bob, []string{alice}, filtertest.Message("To: <"+alice+">", "hi"), dkim.Pass, smtpdtest.Accept, "500 Invalid FROM header", nil, ""},
		{"bare LF", bob, []string{alice}, []byte("From: <" + bob + ">\r\n\nhi\r\n"), dkim.Pass, smtpdtest.Accept, "500 Invalid DATA", nil, ""},
		{"Postfix refuses", bob, []string{strict}, encrypted, dkim.Pass, smtpdtest.PermFail, "554 5.7.1 Sink refuses this", nil, ""},
		{"Postfix refuses a recipient", bob, []string{"unknown@chat.example.org"}, encrypted, dkim.Pass, smtpdtest.RejectRcpt, "550 5.1.1 User unknown", nil, ""},
		{"Postfix unreachable", bob, []string{strict}, encrypted, dkim.Pass, unreachable, "451 4.4.1", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := &origin{outcome: tt.dkim}
			sink := smtpdtest.NewSink(t, max(tt.postfix, smtpdtest.Accept))
			addr := sink.Addr()
			if tt.postfix == unreachable {
				// Nothing listens on a loopback host of the test's own.
				addr = net.JoinHostPort(testnet.Host(t), "10026")
			}
			var logBuf bytes.Buffer
			g := New(Options{
				Direction: Incoming,
				Policy:    &filter.Policy{Markers: filter.Mailboxes{Dir: dir}},
				Origin:    o,
				Handover:  &postfix.Reinjector{Addr: addr},
				Log:       log.New(&logBuf, "", 0),
				Metrics:   metrics.New(metrics.Incoming, "test"),
			})
			got := send(t, g, tt.from, tt.to, tt.msg)
			if tt.reply == "" && got != "" || tt.reply != "" && !strings.HasPrefix(got, tt.reply) {
				t.Errorf("reply %q, want %q", got, tt.reply)
			}
			if strings.Contains(logBuf.String(), "@") {
				t.Errorf("the log holds an address:\n%s", logBuf.String())
			}
			sent := sink.Messages()
			if tt.sentTo == nil {
				if len(sent) != 0 {
					t.Errorf("Postfix queued %+v", sent)
				}
				return
			}
			if len(sent) != 1 || strings.Join(sent[0].To, ",") != strings.Join(tt.sentTo, ",") || sent[0].From != tt.sentAs || !bytes.Equal(sent[0].Data, tt.msg) {
				t.Errorf("Postfix queued %d messages, %+v; want one from %q to %v, bytes unchanged", len(sent), sent, tt.sentAs, tt.sentTo)
			}
			if tt.dkim != dkim.Skipped && o.domain != "example.net" {
				t.Errorf("DKIM asked about %q, want the From domain", o.domain)
			}
		})
	}
}

// unreachable is a Postfix that cannot be reached, among the sink's modes.
const unreachable smtpdtest.Mode = -1

// replyText is an SMTP reply as a client reads it.
func replyText(r *smtp.SMTPError) string {
	text := fmt.Sprintf("%d", r.Code)
	if e := r.EnhancedCode; e != smtp.NoEnhancedCode && e != smtp.EnhancedCodeNotSet {
		text += fmt.Sprintf(" %d.%d.%d", e[0], e[1], e[2])
	}
	return text + " " + r.Message
}

// From the end of the message, the hand-over has the reinjector's
// Timeout in all: a Postfix that never answers the end of the message
// costs that long, then 451 4.4.2, and the DKIM check and the sender <>
// of an incoming message (forwarded mail) are within it too.
func TestHandOverBounded(t *testing.T) {
	const from, to = "srs0=x@fwd.example", "bob@chat.example.org"
	sink := smtpdtest.NewSink(t, smtpdtest.Accept)
	_, release := sink.Hold(t)
	defer release()
	g := New(Options{
		Direction: Incoming,
		Policy:    &filter.Policy{Markers: filter.Mailboxes{Dir: t.TempDir()}},
		Origin:    &origin{outcome: dkim.Pass},
		Handover:  &postfix.Reinjector{Addr: sink.Addr(), Timeout: 500 * time.Millisecond},
		Log:       log.New(io.Discard, "", 0),
		Metrics:   metrics.New(metrics.Incoming, "test"),
	})
	start := time.Now()
	got := send(t, g, from, []string{to}, filtertest.Encrypted("carol@example.net", to, filtertest.GoCryptoV6(t, []byte("hi"))))
	if !strings.HasPrefix(got, "451 4.4.2") {
		t.Errorf("reply %q, want 451 4.4.2", got)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("answered after %v, with a timeout of 0.5 s", d)
	}
}
