// Package filter decides whether a message may pass a chatmail relay:
// encrypted mail passes, unencrypted mail only by the rules that allow it.
// It reads the message and consults nothing but the marker files of
// incoming recipients.
package filter

import (
	"fmt"
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
	InvalidFrom Reason = "invalid_from" // incoming: the From header holds no single address
)

// Verdict is the decision on one message.
type Verdict struct {
	Pass   bool
	Reason Reason

	// Rule says in words which rule decided. It names no address.
	Rule string
	// NotEncrypted says why the message does not count as encrypted
	// mail in its direction, armor headers on outgoing mail included;
	// it is nil for an encrypted message and for the verdicts on the
	// sender (BadSender, ForgedFrom), which come first.
	NotEncrypted error
	// Recipient is the recipient that decided a refusal as Unencrypted:
	// outgoing, the first that is not a passthrough recipient; incoming,
	// the first that refuses unencrypted mail.
	Recipient string
	// NullSender says that incoming mail that passes goes on with the
	// envelope sender <>: its envelope sender is not the address of its
	// From header (forwarding, SRS, or a forgery), so no bounce may go
	// there.
	NullSender bool
}

// Encrypted reports whether the verdict was reached as for encrypted mail
// (an encrypted message or a Secure-Join request).
func (v Verdict) Encrypted() bool {
	return v.Reason == Encrypted || v.Reason == SecureJoin
}

func pass(r Reason, rule string) Verdict   { return Verdict{Pass: true, Reason: r, Rule: rule} }
func refuse(r Reason, rule string) Verdict { return Verdict{Reason: r, Rule: rule} }

// The rules that both directions share.
const (
	ruleEncrypted  = "encrypted: PGP/MIME holding an OpenPGP message of key packets and one SEIPD packet"
	ruleSecureJoin = "a Secure-Join request (vc-request or vg-request) may be unencrypted"
)

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
		return refuse(BadSender, "the envelope sender must be local@domain")
	case !strings.EqualFold(m.From, env.From):
		return refuse(ForgedFrom, "the From header must hold the envelope sender, ignoring case")
	}
	notEncrypted := outgoingNotEncrypted(m)
	if notEncrypted == nil {
		return pass(Encrypted, ruleEncrypted+", armored without headers")
	}
	v := p.outgoingCleartext(env, m)
	v.NotEncrypted = notEncrypted
	return v
}

// outgoingNotEncrypted says why m does not count as encrypted mail from a
// local user, or returns nil if it does: outgoing armor has no headers.
func outgoingNotEncrypted(m *Message) error {
	if m.NotEncrypted == nil && m.ArmorHeader != "" {
		return fmt.Errorf("armor header %.40q: outgoing mail must have none", m.ArmorHeader)
	}
	return m.NotEncrypted
}

// outgoingCleartext judges a message from a local user as if it were not
// encrypted.
func (p *Policy) outgoingCleartext(env Envelope, m *Message) Verdict {
	switch {
	case m.SecureJoin:
		return pass(SecureJoin, ruleSecureJoin)
	case containsFold(p.PassthroughSenders, env.From):
		return pass(PassthroughSender, "the sender is in passthrough_senders and may send unencrypted mail")
	case len(env.To) == 1 && strings.EqualFold(env.To[0], env.From) &&
		m.Subject == "Autocrypt Setup Message" && m.ContentType == "multipart/mixed":
		return pass(AutocryptSetup, "an Autocrypt Setup Message to the sender itself may be unencrypted")
	}
	for _, rcpt := range env.To {
		if !p.passthroughRecipient(rcpt) {
			v := refuse(Unencrypted, "not encrypted, not a Secure-Join request, not from a passthrough sender, "+
				"not an Autocrypt Setup Message to the sender itself, and a recipient is not in passthrough_recipients")
			v.Recipient = rcpt
			return v
		}
	}
	return pass(PassthroughRecipients, "every recipient is in passthrough_recipients and may get unencrypted mail")
}

// ActiveRecipients returns the recipients of incoming mail whose accounts
// are not disabled, in their order. Its error means a marker file could
// not be looked up; the message should be tried again.
func (p *Policy) ActiveRecipients(to []string) ([]string, error) {
	active := make([]string, 0, len(to))
	for _, rcpt := range to {
		disabled, err := p.Markers.Disabled(rcpt)
		if err != nil {
			return nil, err
		}
		if !disabled {
			active = append(active, rcpt)
		}
	}
	return active, nil
}

// Incoming judges a message arriving for local users, whose envelope holds
// only active recipients (see ActiveRecipients). Its error means a marker
// file could not be looked up; the message should be tried again.
func (p *Policy) Incoming(env Envelope, m *Message) (Verdict, error) {
	if _, domain, ok := strings.Cut(m.From, "@"); !ok || domain == "" {
		return refuse(InvalidFrom, "the From header must hold exactly one address"), nil
	}
	var v Verdict
	var err error
	if m.Encrypted {
		v = pass(Encrypted, ruleEncrypted+" (armor headers allowed)")
	} else {
		v, err = p.incomingCleartext(env, m)
		v.NotEncrypted = m.NotEncrypted
	}
	v.NullSender = !strings.EqualFold(env.From, m.From)
	return v, err
}

// incomingCleartext judges a message for local users that is not
// encrypted.
func (p *Policy) incomingCleartext(env Envelope, m *Message) (Verdict, error) {
	switch {
	case m.SecureJoin:
		return pass(SecureJoin, ruleSecureJoin), nil
	case m.AutoSubmitted && m.ContentType == "multipart/report" &&
		strings.EqualFold(localPart(m.From), "mailer-daemon"):
		return pass(MailerDaemon, "a delivery report from mailer-daemon (Auto-Submitted, multipart/report) may be unencrypted"), nil
	}
	for _, rcpt := range env.To {
		marked, err := p.Markers.Marked(rcpt)
		if err != nil {
			return Verdict{}, err
		}
		if marked {
			v := refuse(Unencrypted, "not encrypted, not a Secure-Join request, not a delivery report, and a recipient "+
				"refuses unencrypted mail: it has the enforceE2EEincoming marker, or an address that cannot be looked up safely")
			v.Recipient = rcpt
			return v, nil
		}
	}
	return pass(CleartextAllowed, "no recipient has the enforceE2EEincoming marker, so unencrypted mail passes"), nil
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
