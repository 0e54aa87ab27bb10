// Package postfix hands mail back to Postfix: the reinjection client that
// delivers what the filter accepted to Postfix's reinjection smtpd, and the
// probe that tells whether that smtpd answers.
package postfix

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/emersion/go-smtp"

	"filtermail/metrics"
)

// Timeouts of reinjection: for each step, and DefaultTimeout for all of
// it, every read and write included. The whole stays below Postfix's
// smtpd_proxy_timeout (100 s by default), so that Postfix hears
// filtermail's answer before it gives up on the filter and tells its
// client to try again: a later 250 would have the mail delivered twice.
const (
	dialTimeout    = 10 * time.Second
	commandTimeout = 30 * time.Second
	dataTimeout    = 60 * time.Second
	// DefaultTimeout bounds a whole hand-over.
	DefaultTimeout = 80 * time.Second
)

// Reinjector hands accepted messages back to Postfix.
type Reinjector struct {
	Addr string // host:port of Postfix's reinjection smtpd
	// Timeout bounds a whole hand-over; 0 means DefaultTimeout.
	Timeout time.Duration

	health health
}

// ErrUnreachable and ErrBroken are the answers for mail that could not be
// handed to Postfix: temporary, so the client tries again.
var (
	ErrUnreachable = &smtp.SMTPError{
		Code:         451,
		EnhancedCode: smtp.EnhancedCode{4, 4, 1},
		Message:      "Mail queue unreachable, try again later",
	}
	ErrBroken = &smtp.SMTPError{
		Code:         451,
		EnhancedCode: smtp.EnhancedCode{4, 4, 2},
		Message:      "Connection to the mail queue broke off, try again later",
	}
)

// Error is a failed reinjection: Reply goes back to the client, Err says
// what happened, for the log.
type Error struct {
	Reply *smtp.SMTPError
	Err   error
}

func (e *Error) Error() string { return e.Err.Error() }

// Send delivers msg to Postfix for all recipients or for none. On failure
// it returns an *Error whose Reply is Postfix's own 4xx or 5xx answer to
// the transaction, or a 451 when Postfix could not be reached or the
// connection broke.
func (r *Reinjector) Send(ctx context.Context, from string, opts *smtp.MailOptions, to []string, msg io.WriterTo) error {
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d := net.Dialer{Timeout: dialTimeout}
	conn, err := d.DialContext(ctx, "tcp", r.Addr)
	if err != nil {
		return &Error{ErrUnreachable, err}
	}
	// go-smtp's client puts a deadline on each command but none on the
	// body: the connection is closed when the hand-over's time is up,
	// which ends any read or write.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	c := smtp.NewClient(conn)
	c.CommandTimeout = commandTimeout
	c.SubmissionTimeout = dataTimeout
	defer c.Close()
	err = send(c, from, opts, to, msg)
	if err != nil && ctx.Err() != nil {
		return &Error{ErrBroken, fmt.Errorf("hand-over not done within %v: %w", timeout, err)}
	}
	return err
}

// send runs the transaction on c.
func send(c *smtp.Client, from string, opts *smtp.MailOptions, to []string, msg io.WriterTo) error {
	if err := c.Hello("localhost"); err != nil {
		return &Error{ErrUnreachable, fmt.Errorf("greeting: %w", err)}
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
		return &Error{ErrBroken, fmt.Errorf("sending message: %w", err)}
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
		return &Error{ErrBroken, fmt.Errorf("%s: %w", stage, err)}
	}
	if reply.Code == 421 {
		reply = &smtp.SMTPError{Code: 451, EnhancedCode: reply.EnhancedCode, Message: reply.Message}
	}
	return &Error{reply, fmt.Errorf("%s: Postfix answered %d %s", stage, reply.Code, reply.Message)}
}

// Result is the metrics label for the outcome of a reinjection that
// returned err.
func Result(err error) string {
	var rerr *Error
	switch {
	case err == nil:
		return metrics.ReinjectOK
	case !errors.As(err, &rerr):
		return metrics.ReinjectBroken
	case rerr.Reply == ErrUnreachable:
		return metrics.ReinjectUnreachable
	case rerr.Reply == ErrBroken:
		return metrics.ReinjectBroken
	case rerr.Reply.Code < 500:
		return metrics.ReinjectRefused4xx
	}
	return metrics.ReinjectRefused5xx
}
