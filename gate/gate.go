// Package gate is the one step that every front end of a filter shares: a
// transaction in, one reply out. It judges a message (package filter, and
// DKIM for incoming mail), hands what passes to Postfix, and says what the
// client is to hear. The SMTP server and the HTTP /mxdeliv handler both
// call it, so their rules cannot drift apart.
package gate

import (
	"context"
	"io"
	"log"
	"sync"
	"sync/atomic"

	"filtermail/dkim"
	"filtermail/filter"
	"filtermail/metrics"
	"filtermail/postfix"
)

// Direction is the way mail flows through a filter.
type Direction int

const (
	Outgoing Direction = iota // from local users, after submission
	Incoming                  // from the internet, to local users
)

func (d Direction) String() string {
	if d == Incoming {
		return metrics.Incoming
	}
	return metrics.Outgoing
}

// Title is the direction as the relay's log lines spell it.
func (d Direction) Title() string {
	if d == Incoming {
		return "Incoming"
	}
	return "Outgoing"
}

// Verifier checks that a message comes from the domain of its From
// address; *dkim.Verifier is one.
type Verifier interface {
	Verify(ctx context.Context, msg io.Reader, fromDomain string) dkim.Result
}

// Options configure a Gate.
type Options struct {
	Direction Direction
	Policy    *filter.Policy
	// SendPerMinute and SendBurst are the outgoing rate of each sender:
	// max_user_send_per_minute and max_user_send_burst_size.
	SendPerMinute, SendBurst int
	// Origin checks incoming mail's DKIM signatures; nil turns the
	// check off.
	Origin Verifier
	// Handover is Postfix's reinjection smtpd.
	Handover *postfix.Reinjector
	Log      *log.Logger
	Debug    bool
	Metrics  *metrics.Metrics
}

// Gate judges the transactions of one filter and hands over what passes.
type Gate struct {
	dir      Direction
	policy   atomic.Pointer[filter.Policy]
	limiter  *rateLimiter // outgoing only
	origin   Verifier
	handover *postfix.Reinjector
	blocks   blockPool
	log      *log.Logger
	debug    bool
	metrics  *metrics.Metrics
}

// New returns the gate of a filter.
func New(o Options) *Gate {
	g := &Gate{
		dir:      o.Direction,
		origin:   o.Origin,
		handover: o.Handover,
		log:      o.Log,
		debug:    o.Debug,
		metrics:  o.Metrics,
	}
	g.policy.Store(o.Policy)
	if o.Direction == Outgoing {
		g.limiter = newRateLimiter(o.SendPerMinute, o.SendBurst)
	}
	return g
}

// Direction is the direction of the gate's filter.
func (g *Gate) Direction() Direction { return g.dir }

// Reload takes policy and the outgoing rate for the transactions that start
// from now on.
func (g *Gate) Reload(policy *filter.Policy, sendPerMinute, sendBurst int) {
	g.policy.Store(policy)
	if g.limiter != nil {
		g.limiter.SetRate(sendPerMinute, sendBurst)
	}
}

func (g *Gate) debugf(format string, args ...any) {
	if g.debug {
		g.log.Printf(format, args...)
	}
}

// blockPool keeps the blocks messages are read in, for the next message.
type blockPool struct{ p sync.Pool }

func (b *blockPool) get() []byte {
	if buf, ok := b.p.Get().(*[]byte); ok {
		return *buf
	}
	return make([]byte, blockSize)
}

func (b *blockPool) put(buf []byte) { b.p.Put(&buf) }
