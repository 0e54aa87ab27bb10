package gate

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"filtermail/dkim"
	"filtermail/filter"
	"filtermail/metrics"
	"filtermail/postfix"
)

// Transaction is one message with its envelope, as a front end received
// it.
type Transaction struct {
	From    string            // envelope sender; "" for <>
	Opts    *smtp.MailOptions // MAIL FROM parameters to pass on, or nil
	To      []string
	Message *Buffer
}

// Sender checks the envelope sender of a new transaction, at MAIL FROM:
// outgoing, it must be local@domain and within its rate. Incoming takes
// every sender, <> included.
func (g *Gate) Sender(from string) error {
	if g.dir != Outgoing {
		return nil
	}
	if !filter.ValidSender(from) {
		g.metrics.Message(metrics.Refuse, string(filter.BadSender))
		g.log.Printf("%s: %s (%s) at MAIL FROM.", g.dir.Title(), metrics.Refuse, filter.BadSender)
		return errInvalidSender(from)
	}
	if !g.limiter.Allow(from) {
		g.metrics.RateLimited()
		g.log.Printf("Rate limit reached by a sender.")
		return errRateLimited(from)
	}
	return nil
}

// TooLarge counts and logs a message refused for its size, over limit
// bytes, before it was read whole.
func (g *Gate) TooLarge(limit int64, recipients int) {
	g.metrics.Message(metrics.Refuse, metrics.ReasonTooLarge)
	g.log.Printf("%s: refuse (%s), over %d bytes, %d recipients.", g.dir.Title(), metrics.ReasonTooLarge, limit, recipients)
}

// Submit judges the message of tx and hands it to Postfix if it passes.
// It returns nil once Postfix has taken it (or, incoming, when every
// recipient's account is disabled and the message is dropped), and
// otherwise the *smtp.SMTPError the client is to hear: 5xx for a refusal,
// 4xx for a fault that a later try may not meet.
func (g *Gate) Submit(ctx context.Context, tx *Transaction) error {
	start := time.Now()
	defer func() { g.metrics.Processed(time.Since(start)) }()
	msg := tx.Message
	g.metrics.Received(msg.Len(), len(tx.To))
	title := g.dir.Title()

	if !checkLineEnds(msg) {
		g.outcome(metrics.Refuse, metrics.ReasonInvalidData, msg.Len(), len(tx.To))
		return errInvalidData
	}
	to := tx.To
	policy := g.policy.Load()
	if g.dir == Incoming {
		active, err := policy.ActiveRecipients(to)
		if err != nil {
			g.lookupFailed(err, msg.Len(), len(to))
			return errLookupFailed
		}
		if len(active) == 0 {
			g.outcome(metrics.Dropped, metrics.ReasonDisabled, msg.Len(), len(to))
			return nil
		}
		if dropped := len(to) - len(active); dropped > 0 {
			g.log.Printf("%s: %d of %d recipients disabled, dropped from the envelope.", title, dropped, len(to))
		}
		to = active
	}

	env := filter.Envelope{From: tx.From, To: to}
	m := filter.ReadMessage(msg.Reader())
	var v filter.Verdict
	if g.dir == Outgoing {
		v = policy.Outgoing(env, m)
	} else {
		var err error
		if v, err = policy.Incoming(env, m); err != nil {
			g.lookupFailed(err, msg.Len(), len(to))
			return errLookupFailed
		}
	}
	g.logVerdict(v)

	if v.Pass && g.dir == Incoming && g.origin != nil {
		if err := g.checkOrigin(ctx, m.From, msg, len(to)); err != nil {
			return err
		}
	}
	g.decided(v, m, msg.Len(), len(to))
	switch {
	case v.Reason == filter.BadSender:
		return errInvalidSender(tx.From)
	case v.Reason == filter.ForgedFrom:
		return errForgedFrom(m.From, tx.From)
	case v.Reason == filter.InvalidFrom:
		return errInvalidFrom
	case !v.Pass:
		return errEncryptionNeeded
	}

	from, opts := tx.From, tx.Opts
	if v.NullSender {
		from = ""
		g.log.Printf("%s: envelope sender is not the From address; passed on with the sender <>.", title)
	}
	if opts != nil {
		o := *opts
		o.Size = msg.Len()
		opts = &o
	}
	// The hand-over is not cancelled when the filter stops: mail in
	// flight is finished.
	handStart := time.Now()
	err := g.handover.Send(context.WithoutCancel(ctx), from, opts, to, msg.Reader())
	g.metrics.Reinject(postfix.Result(err), time.Since(handStart))
	var perr *postfix.Error
	if errors.As(err, &perr) {
		g.log.Printf("%s: Reinjection failed: %v", title, perr.Err)
		return perr.Reply
	}
	if err != nil {
		g.log.Printf("%s: Reinjection failed: %v", title, err)
		return postfix.ErrBroken
	}
	g.debugf("%s: Reinjected in %v.", title, time.Since(handStart).Round(time.Millisecond))
	return nil
}

// originTimeout bounds the DKIM check of a message, key lookups included:
// a key that has not come by then is a temporary failure (451), and the
// hand-over to Postfix still has its own time within Postfix's
// smtpd_proxy_timeout.
const originTimeout = 10 * time.Second

// checkOrigin verifies the DKIM signatures of a message from the domain
// of from, and returns the reply for a message that fails.
func (g *Gate) checkOrigin(ctx context.Context, from string, msg *Buffer, recipients int) error {
	ctx, cancel := context.WithTimeout(ctx, originTimeout)
	defer cancel()
	domain := from[strings.LastIndexByte(from, '@')+1:]
	res := g.origin.Verify(ctx, msg.Reader(), domain)
	g.metrics.DKIM(string(res.Outcome))
	var reason string
	var reply error
	switch res.Outcome {
	case dkim.Pass, dkim.Skipped:
		g.debugf("%s: DKIM %s, %d signatures.", g.dir.Title(), res.Outcome, res.Signatures)
		return nil
	case dkim.NoSignature:
		reason, reply = metrics.ReasonDKIMNone, errNoDKIM
	case dkim.TempFail:
		reason, reply = metrics.ReasonDKIMTempFail, errDKIMTempFail
	default:
		reason, reply = metrics.ReasonDKIMFail, errBadDKIM
	}
	verdict := metrics.Refuse
	if res.Outcome == dkim.TempFail {
		verdict = metrics.Tempfail
	}
	g.log.Printf("%s: DKIM %s, %d signatures: %v", g.dir.Title(), res.Outcome, res.Signatures, res.Err)
	g.outcome(verdict, reason, msg.Len(), recipients)
	return reply
}

// lookupFailed counts and logs a marker file that could not be looked up.
func (g *Gate) lookupFailed(err error, size int64, recipients int) {
	g.metrics.Message(metrics.Tempfail, metrics.ReasonLookupFailed)
	g.log.Printf("%s: tempfail (%s), %d bytes, %d recipients: %v", g.dir.Title(), metrics.ReasonLookupFailed, size, recipients, err)
}

// outcome counts and logs a message decided by a rule outside package
// filter.
func (g *Gate) outcome(verdict, reason string, size int64, recipients int) {
	g.metrics.Message(verdict, reason)
	g.log.Printf("%s: %s (%s), %d bytes, %d recipients.", g.dir.Title(), verdict, reason, size, recipients)
}

// logVerdict logs the relay's lines that mtail setups count.
func (g *Gate) logVerdict(v filter.Verdict) {
	title := g.dir.Title()
	switch {
	case v.Reason == filter.ForgedFrom:
		g.log.Printf("%s: Rejected mail whose From header is not the sender.", title)
		return
	case v.Reason == filter.InvalidFrom:
		g.log.Printf("%s: Rejected mail without a single From address.", title)
		return
	case v.Encrypted():
		g.log.Printf("%s: Filtering encrypted mail.", title)
		return
	}
	g.log.Printf("%s: Filtering unencrypted mail.", title)
	switch v.Reason {
	case filter.MailerDaemon:
		g.log.Printf("%s: Filtering mailer-daemon message.", title)
	case filter.Unencrypted:
		g.log.Printf("Rejected unencrypted mail.")
	}
}

// decided counts and logs a verdict of package filter: one line with the
// verdict, the rule and the size.
func (g *Gate) decided(v filter.Verdict, m *filter.Message, size int64, recipients int) {
	verdict := metrics.Refuse
	if v.Pass {
		verdict = metrics.Pass
	}
	g.metrics.Message(verdict, string(v.Reason))
	if v.Reason == filter.Encrypted {
		g.metrics.SEIPD(m.Packets.SEIPDVersion)
	}
	g.log.Printf("%s: %s (%s), %d bytes, %d recipients.", g.dir.Title(), verdict, v.Reason, size, recipients)
	if v.Reason == filter.Encrypted {
		g.debugf("%s: SEIPD v%d, %d key packets, legacy headers %v, partial lengths %v.", g.dir.Title(),
			m.Packets.SEIPDVersion, m.Packets.ESKs, m.Packets.Legacy, m.Packets.Partial)
	}
}
