package gate

import (
	"time"

	"filtermail/dkim"
	"filtermail/filter"
	"filtermail/metrics"
)

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

// originTimeout bounds the key lookups of a message's DKIM check, from
// the end of its header: a key that has not come by then is a temporary
// failure (451), and the hand-over to Postfix still has its own time
// within Postfix's smtpd_proxy_timeout.
const originTimeout = 10 * time.Second

// originReply counts and logs the DKIM check of a message that passed
// the filter, and returns the reply for a message that fails it.
func (g *Gate) originReply(res dkim.Result, size int64, recipients int) error {
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
	g.outcome(verdict, reason, size, recipients)
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
