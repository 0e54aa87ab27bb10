package gate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"filtermail/dkim"
	"filtermail/filter"
	"filtermail/filter/filtertest"
	"filtermail/metrics"
	"filtermail/postfix"
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

// handover is a Handover that records what it was given and answers err.
type handover struct {
	from  string
	to    []string
	data  []byte
	calls int
	err   error
}

func (h *handover) Send(_ context.Context, from string, _ *smtp.MailOptions, to []string, msg io.WriterTo) error {
	h.calls++
	h.from, h.to = from, to
	var b bytes.Buffer
	msg.WriteTo(&b)
	h.data = b.Bytes()
	return h.err
}

func buffer(data []byte) *Buffer {
	var b Buffer
	b.ReadFrom(bytes.NewReader(data))
	return &b
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
		postfix error
		reply   string // "" for accepted
		sentTo  []string
		sentAs  string
	}{
		{"encrypted, signed", bob, []string{strict}, encrypted, dkim.Pass, nil, "", []string{strict}, bob},
		{"bounce", "", []string{strict}, encrypted, dkim.Pass, nil, "", []string{strict}, ""},
		{"forwarded", "srs0=x@fwd.example", []string{strict}, encrypted, dkim.Pass, nil, "", []string{strict}, ""},
		{"disabled dropped", bob, []string{gone, strict}, encrypted, dkim.Pass, nil, "", []string{strict}, bob},
		{"all disabled", bob, []string{gone}, encrypted, dkim.Fail, nil, "", nil, ""},
		{"IP literal From", bob, []string{strict}, encrypted, dkim.Skipped, nil, "", []string{strict}, bob},
		{"no signature", bob, []string{strict}, encrypted, dkim.NoSignature, nil, "554 5.7.1 No DKIM signature found", nil, ""},
		{"bad signature", bob, []string{strict}, encrypted, dkim.Fail, nil, "554 5.7.1 No valid DKIM signature found", nil, ""},
		{"key lookup failed", bob, []string{strict}, encrypted, dkim.TempFail, nil, "451 4.7.5", nil, ""},
		{"cleartext to strict, DKIM not asked", bob, []string{strict}, plain, dkim.Fail, nil, "523 Encryption Needed: Invalid Unencrypted Mail", nil, ""},
		{"no From", bob, []string{alice}, filtertest.Message("To: <"+alice+">", "hi"), dkim.Pass, nil, "500 Invalid FROM header", nil, ""},
		{"bare LF", bob, []string{alice}, []byte("From: <" + bob + ">\r\n\nhi\r\n"), dkim.Pass, nil, "500 Invalid DATA", nil, ""},
		{"Postfix refuses", bob, []string{strict}, encrypted, dkim.Pass,
			&postfix.Error{Reply: &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}, Err: errors.New("RCPT")},
			"550 5.1.1 no such user", []string{strict}, bob},
		{"Postfix unreachable", bob, []string{strict}, encrypted, dkim.Pass, &postfix.Error{Reply: postfix.ErrUnreachable, Err: errors.New("refused")},
			"451 4.4.1", []string{strict}, bob},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, h := &origin{outcome: tt.dkim}, &handover{err: tt.postfix}
			var logBuf bytes.Buffer
			g := New(Options{
				Direction: Incoming,
				Policy:    &filter.Policy{Markers: filter.Mailboxes{Dir: dir}},
				Origin:    o,
				Handover:  h,
				Log:       log.New(&logBuf, "", 0),
				Metrics:   metrics.New(metrics.Incoming, "test"),
			})
			err := g.Submit(context.Background(), &Transaction{From: tt.from, To: tt.to, Message: buffer(tt.msg)})
			got := ""
			if err != nil {
				var reply *smtp.SMTPError
				if !errors.As(err, &reply) {
					t.Fatalf("error %v is not a reply", err)
				}
				got = replyText(reply)
			}
			if tt.reply == "" && got != "" || tt.reply != "" && !strings.HasPrefix(got, tt.reply) {
				t.Errorf("reply %q, want %q", got, tt.reply)
			}
			if asked := o.domain != ""; asked != (tt.sentTo != nil || strings.HasPrefix(tt.reply, "554") || strings.HasPrefix(tt.reply, "451 4.7")) {
				t.Errorf("DKIM asked %v", asked)
			}
			if tt.sentTo == nil {
				if h.calls != 0 && tt.postfix == nil {
					t.Errorf("handed over to %v", h.to)
				}
				return
			}
			if h.calls != 1 || strings.Join(h.to, ",") != strings.Join(tt.sentTo, ",") || h.from != tt.sentAs || !bytes.Equal(h.data, tt.msg) {
				t.Errorf("handed over %d times, from %q to %v; want once from %q to %v, bytes unchanged", h.calls, h.from, h.to, tt.sentAs, tt.sentTo)
			}
			if tt.dkim != dkim.Skipped && o.domain != "example.net" {
				t.Errorf("DKIM asked about %q, want the From domain", o.domain)
			}
			if strings.Contains(logBuf.String(), "@") {
				t.Errorf("the log holds an address:\n%s", logBuf.String())
			}
		})
	}
}

// replyText is an SMTP reply as a client reads it.
func replyText(r *smtp.SMTPError) string {
	text := fmt.Sprintf("%d", r.Code)
	if e := r.EnhancedCode; e != smtp.NoEnhancedCode && e != smtp.EnhancedCodeNotSet {
		text += fmt.Sprintf(" %d.%d.%d", e[0], e[1], e[2])
	}
	return text + " " + r.Message
}
