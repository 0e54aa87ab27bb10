package gate

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"filtermail/filter"
	"filtermail/metrics"
	"filtermail/postfix"
)

// Tx is one transaction through the gate, from MAIL to the reply at the
// end of its message. Its envelope goes on to Postfix as it comes, so
// that Postfix's answer to each recipient reaches the client; its message
// streams to Postfix while it is judged, and Postfix queues it only if it
// passes (see Data). A Tx is used by one goroutine.
type Tx struct {
	g      *Gate
	ctx    context.Context
	policy *filter.Policy
	from   string
	opts   *smtp.MailOptions

	to       []string // the recipients Postfix took
	disabled int      // incoming: recipients dropped, their accounts disabled
	handover *postfix.Transaction

	// Abort may come from another goroutine while Data runs (go-smtp
	// resets a session during BDAT): whichever comes first decides.
	mu    sync.Mutex
	state txState
}

// txState is where a transaction is.
type txState int

const (
	txEnvelope txState = iota // MAIL and RCPTs
	txData                    // Data runs: it ends the hand-over itself
	txEnded
)

// Mail starts a transaction from the envelope sender from ("" for <>),
// with the MAIL FROM parameters in opts to pass on. Outgoing, the sender
// must be local@domain and within its rate: otherwise the error is the
// reply for the client. The hand-over to Postfix is not cancelled with
// ctx: mail in flight is finished when the filter stops.
func (g *Gate) Mail(ctx context.Context, from string, opts *smtp.MailOptions) (*Tx, error) {
	if err := g.Sender(from); err != nil {
		return nil, err
	}
	return &Tx{g: g, ctx: context.WithoutCancel(ctx), policy: g.policy.Load(), from: from, opts: opts}, nil
}

// Rcpt adds a recipient and returns the reply for it: nil when Postfix
// took it, Postfix's own answer when it did not (the transaction goes on
// without it), 451 when Postfix could not be reached. Incoming, a
// recipient whose account is disabled is taken and dropped.
func (tx *Tx) Rcpt(to string) error {
	g := tx.g
	if g.dir == Incoming {
		active, err := tx.policy.ActiveRecipients([]string{to})
		if err != nil {
			g.metrics.Message(metrics.Tempfail, metrics.ReasonLookupFailed)
			g.log.Printf("%s: tempfail (%s) at RCPT TO: %v", g.dir.Title(), metrics.ReasonLookupFailed, err)
			return errLookupFailed
		}
		if len(active) == 0 {
			tx.disabled++
			return nil
		}
	}
	if tx.handover == nil {
		h, err := g.handover.Begin(tx.ctx, tx.from, tx.opts)
		if err != nil {
			return g.handoverFailed(err, 0)
		}
		tx.handover = h
	}
	if err := tx.handover.Rcpt(to); err != nil {
		var perr *postfix.Error
		if errors.As(err, &perr) && perr.Reply != postfix.ErrBroken {
			return perr.Reply // Postfix's answer for this recipient
		}
		return g.handoverFailed(err, 0)
	}
	tx.to = append(tx.to, to)
	return nil
}

// Abort ends the transaction where it is: Postfix keeps nothing of it.
// It may be called at any time, from any goroutine, and more than once.
// Once Data runs, the message decides: Data ends the hand-over itself,
// and a reset connection ends its body, so Data aborts.
func (tx *Tx) Abort() {
	tx.mu.Lock()
	envelope := tx.state == txEnvelope
	if envelope {
		tx.state = txEnded
	}
	tx.mu.Unlock()
	if envelope && tx.handover != nil {
		tx.handover.Abort()
	}
}

// begin moves the transaction to its message; false if it ended.
func (tx *Tx) begin() bool {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.state != txEnvelope {
		return false
	}
	tx.state = txData
	return true
}

// handoverFailed counts and logs a hand-over that failed, and returns the
// reply for the client: Postfix's own 4xx or 5xx, or a 451.
func (g *Gate) handoverFailed(err error, d time.Duration) error {
	g.metrics.Reinject(postfix.Result(err), d)
	title := g.dir.Title()
	var perr *postfix.Error
	if errors.As(err, &perr) {
		g.log.Printf("%s: Reinjection failed: %v", title, perr.Err)
		return perr.Reply
	}
	g.log.Printf("%s: Reinjection failed: %v", title, err)
	return postfix.ErrBroken
}

// ReadError is a message that could not be read to its end; Err is why.
// The front end knows what to answer.
type ReadError struct{ Err error }

func (e *ReadError) Error() string { return fmt.Sprintf("reading the message: %v", e.Err) }
func (e *ReadError) Unwrap() error { return e.Err }
