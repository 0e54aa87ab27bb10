// Package transport carries outbound mail to other relays. It is an LMTP
// server that Postfix uses as its default transport: for each message it
// delivers to every recipient domain at once, over HTTPS POST /mxdeliv
// first and SMTP with STARTTLS second, and answers each recipient with its
// domain's outcome. Postfix's queue is the only queue: a message is held
// in memory only while its deliveries are in flight, within bounds, and a
// transport that is full says so at once.
package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"filtermail/metrics"
	"filtermail/tlspolicy"
)

// Defaults of the bounds in Options.
const (
	// DefaultMaxDeliveries bounds the deliveries in flight, one per
	// message and destination domain.
	DefaultMaxDeliveries = 1000
	// DefaultMaxPerDomain bounds the deliveries in flight to one domain,
	// as Postfix's default_destination_concurrency_limit.
	DefaultMaxPerDomain = 20
	// DefaultMemoryBudget bounds the message bytes held in all.
	DefaultMemoryBudget = 256 << 20
)

// deliveryTimeout bounds all deliveries of one message, so that the
// answer comes well within the 600 s that Postfix's LMTP client waits
// (lmtp_data_done_timeout): a late answer would send the mail twice.
const deliveryTimeout = 5 * time.Minute

// smtpOnlyTime is how long a host whose HTTPS endpoint failed while its
// SMTP server took mail is sent mail over SMTP only; smtpOnlyHosts bounds
// how many such hosts are remembered.
const (
	smtpOnlyTime  = 30 * time.Minute
	smtpOnlyHosts = 10000
)

// Options configure a Transport.
type Options struct {
	// Domain is the relay's mail domain: its name in EHLO and in the
	// LMTP greeting.
	Domain   string
	Resolver Resolver
	// MaxMessageBytes bounds a message taken over LMTP; larger ones get
	// 552. 0: no bound but the memory budget.
	MaxMessageBytes int64
	MaxDeliveries   int   // 0: DefaultMaxDeliveries
	MaxPerDomain    int   // 0: DefaultMaxPerDomain
	MemoryBudget    int64 // 0: DefaultMemoryBudget
	Log             *log.Logger
	Debug           bool // log why each host failed
	Metrics         *metrics.Metrics
}

// Transport delivers mail to other relays.
type Transport struct {
	o        Options
	slots    *slots
	budget   *budget
	https    *httpsChannel
	smtp     *smtpChannel
	smtpOnly *hostMemory
	dests    *destinations
	policy   *tlspolicy.Checker
	// deliveryTimeout bounds all deliveries of one message.
	deliveryTimeout time.Duration

	ctx    context.Context // ends when the transport is stopped
	cancel context.CancelFunc
	sweep  chan struct{}

	server *smtp.Server
	addr   atomic.Value // the LMTP listener's address, once serving
	conns  conns
}

// New returns a transport.
func New(o Options) *Transport {
	if o.MaxDeliveries <= 0 {
		o.MaxDeliveries = DefaultMaxDeliveries
	}
	if o.MaxPerDomain <= 0 {
		o.MaxPerDomain = DefaultMaxPerDomain
	}
	if o.MemoryBudget <= 0 {
		o.MemoryBudget = DefaultMemoryBudget
	}
	d := &dialer{resolver: o.Resolver}
	https := newHTTPSChannel(d, o.MaxPerDomain)
	t := &Transport{
		o:      o,
		slots:  newSlots(o.MaxDeliveries),
		dests:  newDestinations(),
		budget: &budget{limit: o.MemoryBudget},
		https:  https,
		smtp: &smtpChannel{dialer: d, helo: o.Domain, pool: newPool(o.MaxPerDomain),
			sessions: tls.NewLRUClientSessionCache(0), metrics: o.Metrics},
		smtpOnly: newHostMemory(smtpOnlyHosts, smtpOnlyTime),
		policy: tlspolicy.New(tlspolicy.Options{
			Resolver: o.Resolver,
			HTTP:     https.verified.HTTP,
			Log:      o.Log,
		}),
		sweep: make(chan struct{}),

		deliveryTimeout: deliveryTimeout,
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.server = t.newServer()
	go t.sweepPool()
	return t
}

// sweepPool closes pooled connections as they go stale, until the
// transport stops.
func (t *Transport) sweepPool() {
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		select {
		case now := <-tick.C:
			t.smtp.pool.sweep(now)
		case <-t.ctx.Done():
			t.smtp.pool.close()
			t.https.close()
			close(t.sweep)
			return
		}
	}
}

// deliver delivers msg to every recipient, by domain, all domains at
// once, and returns each recipient's reply, in the order of to.
func (t *Transport) deliver(from string, utf8 bool, to []string, msg *message) []*smtp.SMTPError {
	ctx, cancel := context.WithTimeout(t.ctx, t.deliveryTimeout)
	defer cancel()
	byDomain := make(map[string][]int)
	var domains []string
	for i, rcpt := range to {
		d := domainOf(rcpt)
		if _, ok := byDomain[d]; !ok {
			domains = append(domains, d)
		}
		byDomain[d] = append(byDomain[d], i)
	}
	replies := make([]*smtp.SMTPError, len(to))
	var wg sync.WaitGroup
	for _, d := range domains {
		idx := byDomain[d]
		env := envelope{from: from, utf8: utf8, to: make([]string, len(idx))}
		for j, i := range idx {
			env.to[j] = to[i]
		}
		wg.Go(func() {
			rs := t.deliverDomain(ctx, d, env, msg)
			for j, i := range idx {
				replies[i] = rs[j]
			}
		})
	}
	wg.Wait()
	return replies
}

// deliverDomain delivers msg to the recipients of env, all of domain, and
// returns their replies.
func (t *Transport) deliverDomain(ctx context.Context, domain string, env envelope, msg *message) []*smtp.SMTPError {
	start := time.Now()
	t.o.Metrics.DeliveryStarted()
	replies, ch := t.tryHosts(ctx, domain, env, msg)
	t.o.Metrics.DeliveryEnded(string(ch), time.Since(start))
	for _, r := range replies {
		t.o.Metrics.Delivered(string(ch), string(outcomeOf(r)))
	}
	t.logDelivery(ch, replies, msg.size, time.Since(start))
	return replies
}

// tryHosts tries the mail exchangers of domain in turn, HTTPS then SMTP
// on each, until one answers.
func (t *Transport) tryHosts(ctx context.Context, domain string, env envelope, msg *message) ([]*smtp.SMTPError, Channel) {
	dest, refusal := route(ctx, t.o.Resolver, domain)
	if refusal != nil {
		return same(refusal, len(env.to)), None
	}
	var failure *smtp.SMTPError
	for _, host := range dest.hosts {
		// MTA-STS and DANE say which hosts may have the mail, over any
		// channel, and the TLS that SMTP to them needs.
		req := tlspolicy.Requirement{Source: tlspolicy.SourceNone}
		if !dest.literal {
			var err error
			if req, err = t.policy.Require(ctx, domain, dest.authenticated, host); err != nil {
				failure = policyFailure(host, err)
				t.debugf("Transport: %s not used: %v", host, err)
				continue
			}
		}
		triedHTTPS := false
		if !t.smtpOnly.has(host) {
			r, res := t.https.deliver(ctx, dest, host, env, msg)
			if r != nil {
				t.dests.reached(domain)
				return same(r, len(env.to)), HTTPS
			}
			triedHTTPS = true
			t.o.Metrics.HTTPSUnavailable()
			t.debugf("Transport: no HTTPS delivery to %s: %s", host, res.Reply)
		}
		if ctx.Err() != nil {
			break
		}
		replies, hostFailure := t.smtp.deliver(ctx, dest, host, req, env, msg)
		if hostFailure != nil {
			failure = hostFailure
			t.debugf("Transport: no SMTP delivery to %s: %s", host, hostFailure.Message)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		if triedHTTPS {
			t.smtpOnly.add(host)
		}
		t.dests.reached(domain)
		return replies, SMTP
	}
	switch {
	case ctx.Err() != nil && t.ctx.Err() != nil:
		return same(reply(451, smtp.EnhancedCode{4, 3, 2}, "Transport stopping, try again later"), len(env.to)), None
	case ctx.Err() != nil:
		failure = reply(451, smtp.EnhancedCode{4, 4, 2}, "Delivery timed out, try again later")
	case failure == nil:
		failure = reply(451, smtp.EnhancedCode{4, 4, 1}, "No mail exchanger reachable")
	}
	// No relay of the domain could be reached: more mail for it waits in
	// Postfix's queue for a while rather than here.
	t.dests.unreachable(domain, failure.Message)
	return same(failure, len(env.to)), None
}

// policyFailure is the reply for a host that MTA-STS or DANE rule out
// for now.
func policyFailure(host string, err error) *smtp.SMTPError {
	if errors.Is(err, tlspolicy.ErrNotInPolicy) {
		return reply(451, smtp.EnhancedCode{4, 7, 0}, "%s is not a mail exchanger of the MTA-STS policy", host)
	}
	return reply(451, smtp.EnhancedCode{4, 7, 5}, "TLSA lookup for %s failed, try again later", host)
}

// same is n times r.
func same(r *smtp.SMTPError, n int) []*smtp.SMTPError {
	rs := make([]*smtp.SMTPError, n)
	for i := range rs {
		rs[i] = r
	}
	return rs
}

// logDelivery says what one domain's delivery did: the channel, the
// outcomes with their codes, never an address or a reply's text.
func (t *Transport) logDelivery(ch Channel, replies []*smtp.SMTPError, size int64, took time.Duration) {
	if t.o.Log == nil {
		return
	}
	counts := make(map[string]int)
	for _, r := range replies {
		counts[fmt.Sprintf("%s %d %d.%d.%d", outcomeOf(r), r.Code, r.EnhancedCode[0], r.EnhancedCode[1], r.EnhancedCode[2])]++
	}
	var parts []string
	for k, n := range counts {
		parts = append(parts, fmt.Sprintf("%s (%d)", k, n))
	}
	sort.Strings(parts)
	via := "over " + ch.name()
	if ch == None {
		via = "without reaching a relay"
	}
	t.o.Log.Printf("Transport: %s %s, %d bytes, %d ms.", strings.Join(parts, ", "), via, size, took.Milliseconds())
}

func (t *Transport) debugf(format string, args ...any) {
	if t.o.Debug && t.o.Log != nil {
		t.o.Log.Printf(format, args...)
	}
}
