package smtpd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/emersion/go-smtp"
)

// Timeouts of reinjection. Together they stay below Postfix's
// smtpd_proxy_timeout (100s by default), so that Postfix hears filtermail's
// answer before it gives up on the filter.
const (
	reinjectDialTimeout    = 10 * time.Second
	reinjectCommandTimeout = 30 * time.Second
	reinjectDataTimeout    = 60 * time.Second
)

// reinjector hands accepted messages back to Postfix.
type reinjector struct {
	addr string // host:port of Postfix's reinjection smtpd
}

// errReinjectUnreachable and errReinjectBroken are the answers for mail
// that could not be handed to Postfix: temporary, so the client tries again.
var (
	errReinjectUnreachable = &smtp.SMTPError{
		Code:         451,
		EnhancedCode: smtp.EnhancedCode{4, 4, 1},
		Message:      "Mail queue unreachable, try again later",
	}
	errReinjectBroken = &smtp.SMTPError{
		Code:         451,
		EnhancedCode: smtp.EnhancedCode{4, 4, 2},
		Message:      "Connection to the mail queue broke off, try again later",
	}
)

// reinjectError is a failed reinjection: Reply goes back to the client,
// Err says what happened, for the log.
type reinjectError struct {
	Reply *smtp.SMTPError
	Err   error
}

func (e *reinjectError) Error() string { return e.Err.Error() }

// send delivers msg to Postfix for all recipients or for none. On failure
// it returns a *reinjectError whose Reply is Postfix's own 4xx or 5xx
// answer to the transaction, or a 451 when Postfix could not be reached or
// the connection broke.
func (r *reinjector) send(ctx context.Context, from string, opts *smtp.MailOptions, to []string, msg io.WriterTo) error {
	d := net.Dialer{Timeout: reinjectDialTimeout}
	conn, err := d.DialContext(ctx, "tcp", r.addr)
	if err != nil {
		return &reinjectError{errReinjectUnreachable, err}
	}
	c := smtp.NewClient(conn)
	c.CommandTimeout = reinjectCommandTimeout
	c.SubmissionTimeout = reinjectDataTimeout
	defer c.Close()

	if err := c.Hello("localhost"); err != nil {
		return &reinjectError{errReinjectUnreachable, fmt.Errorf("greeting: %w", err)}
	}
	if opts != nil && opts.UTF8 {
		if ok, _ := c.Extension("SMTPUTF8"); !ok {
			// Postfix answers for addresses it cannot take; an ASCII
			// envelope goes through without the flag.
			o := *opts
			o.UTF8 = false
			opts = &o
		}
	}
	if err := c.Mail(from, opts); err != nil {
		return transactionError("MAIL", err)
	}
	for _, rcpt := range to {
		if err := c.Rcpt(rcpt, nil); err != nil {
			return transactionError("RCPT", err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return transactionError("DATA", err)
	}
	if _, err := msg.WriteTo(w); err != nil {
		return &reinjectError{errReinjectBroken, fmt.Errorf("sending message: %w", err)}
	}
	if err := w.Close(); err != nil {
		return transactionError("end of data", err)
	}
	c.Quit()
	return nil
}

// transactionError passes Postfix's 4xx and 5xx replies on unchanged, but
// for 421, whose closing of the connection is Postfix's and not ours.
// Anything else is a broken connection.
func transactionError(stage string, err error) error {
	var reply *smtp.SMTPError
	if !errors.As(err, &reply) || reply.Code < 400 || reply.Code > 599 {
		return &reinjectError{errReinjectBroken, fmt.Errorf("%s: %w", stage, err)}
	}
	if reply.Code == 421 {
		reply = &smtp.SMTPError{Code: 451, EnhancedCode: reply.EnhancedCode, Message: reply.Message}
	}
	return &reinjectError{reply, fmt.Errorf("%s: Postfix answered %d %s", stage, reply.Code, reply.Message)}
}
