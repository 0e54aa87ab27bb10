package tlspolicy

import (
	"context"
	"errors"
	"log"
	"net/http"
	"sync"
	"time"

	"filtermail/dns"
)

// Resolver is what the checks need from DNS; *dns.Resolver has it.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) (dns.TXT, error)
	LookupTLSA(ctx context.Context, name string) (dns.TLSA, error)
}

// Options configure a Checker.
type Options struct {
	// Resolver answers the TXT and TLSA lookups. Required.
	Resolver Resolver
	// HTTP fetches https://mta-sts.<domain>/.well-known/mta-sts.txt.
	// Its dialer must resolve names through the same DNS server as
	// Resolver, and its TLS configuration must verify certificates with
	// the system roots. The Checker never follows a redirect and keeps no
	// cookies, whatever the client is set to do. Required.
	HTTP *http.Client
	// CacheSize is how many domains' MTA-STS policies are kept, the least
	// recently used forgotten first; 0 means DefaultCacheSize.
	CacheSize int
	// Log receives a line for each policy fetched or not fetched; nil
	// logs nothing. No line holds a mail address.
	Log *log.Logger
}

// DefaultCacheSize is the number of MTA-STS policies kept when
// Options.CacheSize is 0.
const DefaultCacheSize = 1000

// ErrTemporary is wrapped by the errors of lookups and fetches that failed
// for a reason that may pass: a DNS server failing or not answering, a
// policy server unreachable or failing.
var ErrTemporary = errors.New("temporary failure")

// Checker finds the MTA-STS policies of domains and the DANE records of
// mail exchangers. It is safe for concurrent use.
type Checker struct {
	resolver Resolver
	http     *http.Client // a copy of the caller's, without redirects or cookies
	log      *log.Logger
	now      func() time.Time

	mu       sync.Mutex
	policies *cache
	inflight map[string]*call // policy fetches under way, by domain and id
}

// New returns a Checker that works with o.
func New(o Options) *Checker {
	c := &Checker{
		resolver: o.Resolver,
		log:      o.Log,
		now:      time.Now,
		policies: newCache(o.CacheSize),
		inflight: map[string]*call{},
	}
	if o.HTTP != nil {
		hc := *o.HTTP
		hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		hc.Jar = nil
		c.http = &hc
	}
	return c
}

func (c *Checker) logf(format string, args ...any) {
	if c.log != nil {
		c.log.Printf(format, args...)
	}
}

// tempError marks err as temporary.
type tempError struct{ err error }

func (e *tempError) Error() string        { return e.err.Error() + " (temporary)" }
func (e *tempError) Unwrap() error        { return e.err }
func (e *tempError) Is(target error) bool { return target == ErrTemporary }

func temporary(err error) error { return &tempError{err} }
