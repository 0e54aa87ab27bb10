// Package filter decides whether a message may pass a chatmail relay:
// encrypted mail passes, unencrypted mail only by the rules that allow it.
// It reads the message and consults nothing but the marker files of
// incoming recipients.
package filter

import (
	"strings"

	"filtermail/config"
)

// Reason names the rule behind a verdict. Logs and metrics use it.
type Reason string

// Reasons to let a message pass.
const (
	Encrypted             Reason = "encrypted"
	SecureJoin            Reason = "securejoin"
	PassthroughSender     Reason = "passthrough_sender"
	AutocryptSetup        Reason = "autocrypt_setup"
	PassthroughRecipients Reason = "passthrough_recipients"
	MailerDaemon          Reason = "mailer_daemon"
	CleartextAllowed      Reason = "cleartext_allowed"
)

// Reasons to refuse a message.
const (
	Unencrypted Reason = "unencrypted"
	ForgedFrom  Reason = "forged_from"
	BadSender   Reason = "bad_sender"
)

// Verdict is the decision on one message.
type Verdict struct {
	Pass   bool
	Reason Reason
}

// Encrypted reports whether the verdict was reached as for encrypted mail
// (an encrypted message or a Secure-Join request).
func (v Verdict) Encrypted() bool {
	return v.Reason == Encrypted || v.Reason == SecureJoin
}

func pass(r Reason) Verdict   { return Verdict{Pass: true, Reason: r} }
func refuse(r Reason) Verdict { return Verdict{Reason: r} }

// Envelope is the SMTP envelope of a message.
type Envelope struct {
	From string
	To   []string
}

// Policy holds the rules of one relay.
type Policy struct {
	PassthroughSenders    []string
	PassthroughRecipients []string // addresses, or "@domain" for a whole domain
	Markers               MarkerLookup
}

// NewPolicy returns the policy configured in c.
func NewPolicy(c *config.Config) *Policy {
	return &Policy{
		PassthroughSenders:    c.PassthroughSenders,
		PassthroughRecipients: c.PassthroughRecipients,
		Markers:               Mailboxes{Dir: c.MailboxesDir},
	}
}

// ValidSender reports whether addr, the envelope sender of outgoing mail,
// has the form local@domain. Outgoing mail from any other sender is refused
// with the reason BadSender, at MAIL FROM.
func ValidSender(addr string) bool {
	local, domain, ok := strings.Cut(addr, "@")
	return ok && local != "" && domain != "" && !strings.Contains(domain, "@")
}

// Outgoing judges a message a local user sends.
func (p *Policy) Outgoing(env Envelope, m *Message) Verdict {
	switch {
	case !ValidSender(env.From):
		return refuse(BadSender)
	case !strings.EqualFold(m.From, env.From):
		return refuse(ForgedFrom)
	case m.Encrypted && !m.ArmorHeaders:
		return pass(Encrypted)
	case m.SecureJoin:
		return pass(SecureJoin)
	case containsFold(p.PassthroughSenders, env.From):
		return pass(PassthroughSender)
	case len(env.To) == 1 && strings.EqualFold(env.To[0], env.From) &&
		m.Subject == "Autocrypt Setup Message" && m.ContentType == "multipart/mixed":
		return pass(AutocryptSetup)
	}
	for _, rcpt := range env.To {
		if !p.passthroughRecipient(rcpt) {
			return refuse(Unencrypted)
		}
	}
	return pass(PassthroughRecipients)
}

// Incoming judges a message arriving for local users. Its error means a
// marker file could not be looked up; the message should be tried again.
func (p *Policy) Incoming(env Envelope, m *Message) (Verdict, error) {
	switch {
	case m.Encrypted:
		return pass(Encrypted), nil
	case m.SecureJoin:
		return pass(SecureJoin), nil
	case m.AutoSubmitted && m.ContentType == "multipart/report" &&
		strings.EqualFold(localPart(m.From), "mailer-daemon"):
		return pass(MailerDaemon), nil
	}
	for _, rcpt := range env.To {
		marked, err := p.Markers.Marked(rcpt)
		if err != nil {
			return Verdict{}, err
		}
		if marked {
			return refuse(Unencrypted), nil
		}
	}
	return pass(CleartextAllowed), nil
}

func (p *Policy) passthroughRecipient(rcpt string) bool {
	for _, allowed := range p.PassthroughRecipients {
		if domain, ok := strings.CutPrefix(allowed, "@"); ok {
			_, rcptDomain, _ := strings.Cut(rcpt, "@")
			if strings.EqualFold(rcptDomain, domain) {
				return true
			}
		} else if strings.EqualFold(rcpt, allowed) {
			return true
		}
	}
	return false
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

func localPart(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return addr[:i]
}
