// Package postfix hands mail back to Postfix: the reinjection client that
// delivers what the filter accepted to Postfix's reinjection smtpd, and the
// probe that tells whether that smtpd answers.
package postfix

import (
	"errors"
	"fmt"
	"time"

	"github.com/emersion/go-smtp"

	"filtermail/metrics"
)

// Timeouts of reinjection: for each step, and DefaultTimeout for the end
// of it, from the end of the client's message to Postfix's answer, every
// read and write included. Each stays below Postfix's
// smtpd_proxy_timeout (100 s by default), so that Postfix hears
// filtermail's answer before it gives up on the filter and tells its
// client to try again: a later 250 would have the mail delivered twice.
const (
	dialTimeout    = 10 * time.Second
	commandTimeout = 30 * time.Second
	dataTimeout    = 60 * time.Second
	// DefaultTimeout bounds the end of a hand-over: from the end of the
	// message to Postfix's answer.
	DefaultTimeout = 80 * time.Second
)

// Reinjector hands accepted messages back to Postfix.
type Reinjector struct {
	Addr string // host:port of Postfix's reinjection smtpd
	// Timeout bounds the end of a hand-over, from the end of the
	// message to Postfix's answer; 0 means DefaultTimeout.
	Timeout time.Duration

	health health
	chunks chunkPool
	idle   idleLinks
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

// CommitTimeout is the bound of the end of a hand-over.
func (r *Reinjector) CommitTimeout() time.Duration {
	if r.Timeout <= 0 {
		return DefaultTimeout
	}
	return r.Timeout
}

// Error is a failed reinjection: Reply goes back to the client, Err says
// what happened, for the log.
type Error struct {
	Reply *smtp.SMTPError
	Err   error
}

func (e *Error) Error() string { return e.Err.Error() }

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
