package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/emersion/go-smtp"

	"filtermail/metrics"
	"filtermail/tlspolicy"
)

// smtpChannel delivers over SMTP on port 25, STARTTLS required.
type smtpChannel struct {
	dialer   *dialer
	helo     string // our name in EHLO: the mail domain
	pool     *pool
	sessions tls.ClientSessionCache
	metrics  *metrics.Metrics
}

// envelope is a transaction's sender and recipients to one domain.
type envelope struct {
	from string
	utf8 bool // SMTPUTF8 was asked for
	to   []string
}

// tlsConfig is the TLS that SMTP to host must have for dest under req,
// nil for none. A DANE or MTA-STS requirement outranks the exceptions of
// test domains and of domains that take mail only without TLS.
func (ch *smtpChannel) tlsConfig(dest destination, host string, req tlspolicy.Requirement) *tls.Config {
	if dest.plain && req.Source == tlspolicy.SourceNone {
		return nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ClientSessionCache: ch.sessions}
	if net.ParseIP(host) == nil {
		cfg.ServerName = host
	}
	switch req.Source {
	case tlspolicy.SourceDANE:
		return req.TLSConfig(cfg, host)
	case tlspolicy.SourceNone:
		cfg.InsecureSkipVerify = !dest.verify
	}
	return cfg
}

// poolKey says which pooled connections a delivery to host for dest can
// take: those to host made with the same TLS.
func poolKey(dest destination, host string, req tlspolicy.Requirement) string {
	switch {
	case req.Source != tlspolicy.SourceNone:
		return host + " " + string(req.Source)
	case dest.plain:
		return host + " plain"
	case !dest.verify:
		return host + " unverified"
	}
	return host + " verified"
}

// connect returns a connection to host ready for a transaction: a pooled
// one after RSET, or a new one after the greeting, EHLO and STARTTLS.
// Its error is the reply for a host that could not be used.
func (ch *smtpChannel) connect(ctx context.Context, dest destination, host string, req tlspolicy.Requirement) (*smtpConn, *smtp.SMTPError) {
	key := poolKey(dest, host, req)
	for c := ch.pool.get(key); c != nil; c = ch.pool.get(key) {
		stop := context.AfterFunc(ctx, func() { c.Close() })
		err := c.reset()
		stop()
		if err == nil {
			return c, nil
		}
		c.Close()
	}
	raw, err := ch.dialer.DialContext(ctx, "tcp", net.JoinHostPort(host, "25"))
	if err != nil {
		return nil, reply(451, smtp.EnhancedCode{4, 4, 1}, "Cannot connect to %s: %s", host, oneLine(err.Error()))
	}
	c := newSMTPConn(raw)
	c.key = key
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	if err := c.hello(ch.helo, ch.tlsConfig(dest, host, req)); err != nil {
		c.Close()
		return nil, sessionFailure(ctx, host, err)
	}
	ch.metrics.SMTPSession(string(req.Source))
	return c, nil
}

// sessionFailure is the reply for a host whose session failed before a
// transaction began.
func sessionFailure(ctx context.Context, host string, err error) *smtp.SMTPError {
	var r *serverReply
	var terr *tlsError
	switch {
	case ctx.Err() != nil:
		return reply(451, smtp.EnhancedCode{4, 4, 2}, "Delivery timed out talking to %s", host)
	case errors.Is(err, errNoStartTLS):
		return reply(451, smtp.EnhancedCode{4, 7, 4}, "TLS is required, but %s does not offer STARTTLS", host)
	case errors.As(err, &terr):
		return reply(451, smtp.EnhancedCode{4, 7, 5}, "TLS with %s failed: %s", host, oneLine(terr.err.Error()))
	case errors.As(err, &r):
		return reply(451, smtp.EnhancedCode{4, 4, 0}, "%s refused the session: %d %s", host, r.Code, oneLine(r.Message))
	case isTimeout(err):
		return reply(451, smtp.EnhancedCode{4, 4, 2}, "Timeout talking to %s", host)
	}
	return reply(451, smtp.EnhancedCode{4, 4, 1}, "Session with %s failed: %s", host, oneLine(err.Error()))
}

func isTimeout(err error) bool {
	var nerr net.Error
	return errors.As(err, &nerr) && nerr.Timeout()
}

// send runs one transaction on c and returns the reply for each
// recipient of env, and whether c can be used again.
func (ch *smtpChannel) send(ctx context.Context, c *smtpConn, host string, env envelope, msg *message) ([]*smtp.SMTPError, bool) {
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	replies := make([]*smtp.SMTPError, len(env.to))
	all := func(r *smtp.SMTPError, which []int) {
		for _, i := range which {
			replies[i] = r
		}
	}
	everyone := make([]int, len(env.to))
	for i := range everyone {
		everyone[i] = i
	}
	lost := func(step string, err error, which []int) ([]*smtp.SMTPError, bool) {
		r := reply(451, smtp.EnhancedCode{4, 4, 2}, "Lost connection with %s after %s: %s", host, step, oneLine(err.Error()))
		if ctx.Err() != nil {
			r = reply(451, smtp.EnhancedCode{4, 4, 2}, "Delivery timed out talking to %s after %s", host, step)
		}
		all(r, which)
		return replies, false
	}
	if _, ok := c.ext["SMTPUTF8"]; env.utf8 && !ok {
		all(reply(554, smtp.EnhancedCode{5, 6, 7}, "SMTPUTF8 is required, but %s does not offer it", host), everyone)
		return replies, true
	}

	var mail strings.Builder
	fmt.Fprintf(&mail, "MAIL FROM:<%s>", env.from)
	if _, ok := c.ext["8BITMIME"]; ok {
		mail.WriteString(" BODY=8BITMIME")
	}
	if _, ok := c.ext["SIZE"]; ok {
		fmt.Fprintf(&mail, " SIZE=%d", msg.size)
	}
	if env.utf8 {
		mail.WriteString(" SMTPUTF8")
	}
	r, err := c.cmd(commandTimeout, "%s", mail.String())
	if err != nil {
		return lost("MAIL FROM", err, everyone)
	}
	if r.Code/100 != 2 {
		all(remoteReply(r.Code, r.EnhancedCode, r.Message, SMTP), everyone)
		return replies, !closing(r) && c.reset() == nil
	}
	var accepted []int
	for i, to := range env.to {
		r, err := c.cmd(commandTimeout, "RCPT TO:<%s>", to)
		if err != nil {
			return lost("RCPT TO", err, everyone)
		}
		if closing(r) {
			// The server ends the session: the transaction is gone.
			all(remoteReply(r.Code, r.EnhancedCode, r.Message, SMTP), everyone)
			return replies, false
		}
		if r.Code/100 == 2 {
			accepted = append(accepted, i)
		} else {
			replies[i] = remoteReply(r.Code, r.EnhancedCode, r.Message, SMTP)
		}
	}
	if len(accepted) == 0 {
		return replies, c.reset() == nil
	}
	r, err = c.cmd(commandTimeout, "DATA")
	if err != nil {
		return lost("DATA", err, accepted)
	}
	if r.Code != 354 {
		all(remoteReply(r.Code, r.EnhancedCode, r.Message, SMTP), accepted)
		return replies, !closing(r) && c.reset() == nil
	}
	r, err = c.writeData(msg)
	if err != nil {
		return lost("end of data", err, accepted)
	}
	all(remoteReply(r.Code, r.EnhancedCode, r.Message, SMTP), accepted)
	return replies, !closing(r)
}

// closing reports whether r is a server's 421: it closes the session.
func closing(r *serverReply) bool { return r.Code == 421 }

// deliver delivers msg to the recipients of env over SMTP to host. A
// host that could not be used is a *smtp.SMTPError second result; then
// the next mail exchanger may be tried.
func (ch *smtpChannel) deliver(ctx context.Context, dest destination, host string, req tlspolicy.Requirement, env envelope, msg *message) ([]*smtp.SMTPError, *smtp.SMTPError) {
	c, failure := ch.connect(ctx, dest, host, req)
	if failure != nil {
		return nil, failure
	}
	replies, reusable := ch.send(ctx, c, host, env, msg)
	if reusable && ctx.Err() == nil {
		ch.pool.put(c)
	} else {
		c.Close()
	}
	return replies, nil
}
