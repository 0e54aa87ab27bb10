// Package dkim tells whether incoming mail really comes from the domain in
// its From header: it must carry a valid DKIM signature (RFC 6376) whose d=
// is that domain, compared without regard to case and with no relaxation to
// parent or sub-domains (strict alignment).
//
// Signatures are checked with github.com/emersion/go-msgauth, which hashes
// the body as it reads it: the message is read once, as a stream, and never
// held whole nor written anywhere. Only the header is held, up to
// maxHeaderBytes. Bytes are bytes: 8-bit and non-UTF-8 messages are verified
// like any other.
//
// Keys are TXT records looked up through a TXTResolver (the dns package's
// Resolver), and only for signatures whose d= is the From domain: a message
// cannot make the verifier query domains that could not make it pass. Found
// keys are kept in a bounded LRU cache for their TTL (at most maxKeyTTL);
// names that were not found and failed lookups are never cached.
//
// Some signatures are never accepted, even if their cryptography holds:
//
//   - Signatures with an l= (body length) tag. l= says that only the first
//     so many bytes of the body are signed, so anyone who handles the mail on
//     its way can append what they like (a new MIME part, a different text)
//     below the signed part and the signature still verifies; RFC 6376
//     section 8.2 warns of exactly this. The signers of chatmail relays
//     (OpenDKIM as they configure it, and dkimpy by default) never set it.
//   - Signatures past the first maxSignatures of a message: each costs a
//     pass over the whole body.
//
// And some messages are not verified at all (Fail), because go-msgauth would
// spend time or memory out of proportion on them: a header larger than
// maxHeaderBytes, and a body with a run of more than maxBlankRun/2 empty
// lines (its simple body canonicalization copies such a run again for every
// chunk it is written, in time quadratic in the run's length; its relaxed one
// holds the run in memory).
package dkim

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	msgauth "github.com/emersion/go-msgauth/dkim"

	"filtermail/dns"
)

const (
	// DefaultCacheSize is how many keys the cache holds when
	// Options.CacheSize is 0.
	DefaultCacheSize = 1000
	// maxKeyTTL caps how long a key is cached, whatever its TTL.
	maxKeyTTL = time.Hour
	// maxSignatures is how many DKIM-Signature fields of one message are
	// checked; the ones after them are ignored.
	maxSignatures = 8
	// maxHeaderBytes bounds the header the verifier holds.
	maxHeaderBytes = 1 << 20
	// maxBlankRun bounds a run of line-end bytes in the body: 8192 empty
	// lines.
	maxBlankRun = 16 << 10
	// maxErrLen bounds the text of Result.Err, which goes to the log.
	maxErrLen = 300
)

// Outcome is the verdict on one message.
type Outcome string

const (
	Pass        Outcome = "pass"     // a valid signature whose d= is the From domain
	NoSignature Outcome = "none"     // no DKIM-Signature header
	Fail        Outcome = "fail"     // signatures, none valid and aligned
	TempFail    Outcome = "tempfail" // a key lookup failed temporarily, and no signature is valid and aligned
	Skipped     Outcome = "skipped"  // From domain is an IP literal ("[1.2.3.4]"): no DNS, no check
)

// Outcomes lists every Outcome, for metrics that export each at 0.
func Outcomes() []Outcome { return []Outcome{Pass, NoSignature, Fail, TempFail, Skipped} }

// Result is the verdict on one message and what led to it.
type Result struct {
	Outcome Outcome
	// Signatures is how many DKIM-Signature header fields the message has
	// (0 if its header was not read: an IP-literal From domain, a header
	// too large, a read error).
	Signatures int
	// Err says why the outcome is not Pass, for the log. It may name a
	// domain and a selector, never a mail address.
	Err error
}

// TXTResolver looks up TXT records. *dns.Resolver implements it. An error
// that is a *net.DNSError with IsNotFound means there is no such record;
// with IsTemporary or IsTimeout (or any net.Error that is temporary), that
// the lookup may succeed later.
type TXTResolver interface {
	LookupTXT(ctx context.Context, name string) (dns.TXT, error)
}

// Results of a key lookup, as Lookup.Result.
const (
	LookupOK       = "ok"
	LookupNotFound = "not_found"
	LookupTempFail = "tempfail"
	LookupError    = "error"
)

// LookupResults lists every Lookup.Result, for metrics that export each
// at 0.
func LookupResults() []string {
	return []string{LookupOK, LookupNotFound, LookupTempFail, LookupError}
}

// Lookup describes one key lookup, for metrics.
type Lookup struct {
	Cached        bool   // answered from the cache
	Result        string // LookupOK, LookupNotFound, LookupTempFail or LookupError
	Authenticated bool   // the answer carried the DNSSEC AD bit
}

// Options configure a Verifier.
type Options struct {
	// Resolver looks keys up. It must not be nil.
	Resolver TXTResolver
	// CacheSize is how many keys are held; 0 means DefaultCacheSize.
	CacheSize int
	// Observe, if not nil, is called for every key lookup, from the
	// cache or not. It may be called from several goroutines at once.
	Observe func(Lookup)
}

// Verifier checks the DKIM signatures of messages. It is safe for
// concurrent use.
type Verifier struct {
	resolver TXTResolver
	cache    *cache
	observe  func(Lookup)
	now      func() time.Time
}

// New returns a Verifier.
func New(o Options) *Verifier {
	if o.Resolver == nil {
		panic("dkim: Options.Resolver is nil")
	}
	size := o.CacheSize
	if size <= 0 {
		size = DefaultCacheSize
	}
	observe := o.Observe
	if observe == nil {
		observe = func(Lookup) {}
	}
	return &Verifier{resolver: o.Resolver, cache: newCache(size), observe: observe, now: time.Now}
}

var (
	errNoSignature = errors.New("no DKIM-Signature header")
	errIPLiteral   = errors.New("From domain is an IP literal: not checked")
	errNotAligned  = errors.New("d= is not the From domain: key not looked up")
)

// Verify checks the message read from msg, whose From header names
// fromDomain. It reads msg once, and not always to its end. Key lookups
// end with ctx.
//
// The outcome is Pass if a signature whose d= is fromDomain verifies; else
// TempFail if the key of such a signature could not be looked up for a
// reason that may pass (or msg could not be read); else Fail if the message
// has signatures; else NoSignature. A fromDomain that is an IP literal
// ("[192.0.2.1]") is Skipped, and msg is not read.
func (v *Verifier) Verify(ctx context.Context, msg io.Reader, fromDomain string) Result {
	from := normalize(fromDomain)
	if strings.HasPrefix(from, "[") {
		return Result{Outcome: Skipped, Err: errIPLiteral}
	}

	src := &errReader{r: msg}
	br := bufio.NewReader(src)
	hdr, err := readHeader(br, maxHeaderBytes)
	if src.err != nil {
		return Result{Outcome: TempFail, Err: newError(src.err, "reading the message")}
	}
	if err != nil {
		return Result{Outcome: Fail, Err: err}
	}
	sigs := signatures(hdr)
	res := Result{Signatures: len(sigs)}
	if len(sigs) == 0 {
		res.Outcome, res.Err = NoSignature, errNoSignature
		return res
	}
	checked := sigs[:min(len(sigs), maxSignatures)]
	if !slices.ContainsFunc(checked, func(s signature) bool { return aligned(s.domain, from) && !s.hasL }) {
		// Nothing here can pass: spare the lookups and the body.
		res.Outcome, res.Err = Fail, tooMany(sigs, notPassing(checked, from))
		return res
	}

	body := &bodyReader{r: br, limit: maxBlankRun}
	verifs, err := msgauth.VerifyWithOptions(io.MultiReader(bytes.NewReader(hdr), body), &msgauth.VerifyOptions{
		LookupTXT:        v.lookupFunc(ctx, from),
		MaxVerifications: maxSignatures,
	})
	switch {
	case src.err != nil:
		res.Outcome, res.Err = TempFail, newError(src.err, "reading the message")
		return res
	case body.tripped != nil:
		res.Outcome, res.Err = Fail, body.tripped
		return res
	case err != nil && !errors.Is(err, msgauth.ErrTooManySignatures):
		// go-msgauth's verifications are not to be trusted then: it
		// clears the error of the one that failed this way.
		res.Outcome, res.Err = Fail, newError(err, "verifying")
		return res
	}

	// go-msgauth returns one verification per signature checked, in the
	// order of the header; if it saw them otherwise, go by its own word.
	matched := len(verifs) == len(checked)
	var failErr, tempErr error
	for i, vf := range verifs {
		// Where go-msgauth could not read the tags, its Domain is empty;
		// where it could, it is the d= read here.
		sig := signature{domain: vf.Domain}
		if matched {
			sig = checked[i]
		}
		if !aligned(sig.domain, from) {
			continue
		}
		switch {
		case sig.hasL:
			failErr = first(failErr, sigError(sig, errLTag))
		case vf.Err == nil:
			return Result{Outcome: Pass, Signatures: len(sigs)}
		case msgauth.IsTempFail(vf.Err):
			tempErr = first(tempErr, sigError(sig, vf.Err))
		default:
			failErr = first(failErr, sigError(sig, vf.Err))
		}
	}
	if tempErr != nil {
		res.Outcome, res.Err = TempFail, tooMany(sigs, tempErr)
		return res
	}
	if failErr == nil {
		failErr = notPassing(checked, from)
	}
	res.Outcome, res.Err = Fail, tooMany(sigs, failErr)
	return res
}

var errLTag = errors.New("l= tag: a body length limit lets anyone append to the message, not accepted")

// first keeps the first error.
func first(err, next error) error {
	if err != nil {
		return err
	}
	return next
}

// notPassing says why none of sigs can pass.
func notPassing(sigs []signature, from string) error {
	var others []string
	for _, s := range sigs {
		if aligned(s.domain, from) && s.hasL {
			return sigError(s, errLTag)
		}
		if d := "d=" + s.domain; !slices.Contains(others, d) {
			others = append(others, d)
		}
	}
	return newError(nil, "no signature with d=%s, only %s", from, strings.Join(others, " "))
}

// tooMany notes in err that signatures past maxSignatures were not checked.
func tooMany(sigs []signature, err error) error {
	if len(sigs) <= maxSignatures {
		return err
	}
	return newError(err, "only the first %d of %d signatures checked", maxSignatures, len(sigs))
}

func sigError(s signature, err error) error {
	return newError(err, "d=%s s=%s", s.domain, s.selector)
}

// normalize returns a domain in lower case without a final dot.
func normalize(domain string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(domain)), ".")
}

// aligned tells whether d= names the From domain (already normalized).
func aligned(d, from string) bool {
	return from != "" && normalize(d) == from
}

// lookupFunc returns the key lookup go-msgauth calls, for a message from
// the domain from. It may be called from several goroutines at once.
func (v *Verifier) lookupFunc(ctx context.Context, from string) func(string) ([]string, error) {
	suffix := "._domainkey." + from
	return func(name string) ([]string, error) {
		name = normalize(name)
		if len(name) <= len(suffix) || !strings.HasSuffix(name, suffix) {
			return nil, errNotAligned
		}
		return v.lookup(ctx, name)
	}
}

// lookup returns the TXT records at name, from the cache or the resolver.
// Its errors are what go-msgauth needs to tell a temporary failure (a
// net.Error whose Temporary is true) from a permanent one.
func (v *Verifier) lookup(ctx context.Context, name string) ([]string, error) {
	now := v.now()
	if e, ok := v.cache.get(name, now); ok {
		v.observe(Lookup{Cached: true, Result: LookupOK, Authenticated: e.authenticated})
		return slices.Clone(e.records), nil
	}
	txt, err := v.resolver.LookupTXT(ctx, name)
	if err == nil && len(txt.Records) == 0 {
		err = &net.DNSError{Err: "no TXT record", Name: name, IsNotFound: true}
	}
	if err != nil {
		result, err := classify(name, err)
		v.observe(Lookup{Result: result})
		return nil, err
	}
	if ttl := min(txt.TTL, maxKeyTTL); ttl > 0 {
		v.cache.put(cacheEntry{name: name, records: slices.Clone(txt.Records), authenticated: txt.Authenticated, expires: now.Add(ttl)})
	}
	v.observe(Lookup{Result: LookupOK, Authenticated: txt.Authenticated})
	return txt.Records, nil
}

// classify turns a lookup error into a Lookup.Result and the error to give
// go-msgauth, which looks at that error's own type (no unwrapping): a
// temporary failure must be a net.Error whose Temporary is true.
func classify(name string, err error) (string, error) {
	var de *net.DNSError
	if errors.As(err, &de) {
		switch {
		case de.IsNotFound:
			return LookupNotFound, de
		case de.IsTemporary || de.IsTimeout:
			return LookupTempFail, de
		}
		return LookupError, de
	}
	var ne net.Error
	var oe *net.OpError // a network error: the resolver may be back soon
	timeout := errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded)
	if timeout || ne != nil && ne.Temporary() || errors.As(err, &oe) || errors.Is(err, context.Canceled) {
		return LookupTempFail, &net.DNSError{Err: err.Error(), Name: name, IsTemporary: true, IsTimeout: timeout}
	}
	return LookupError, err
}

// verifyError is the error of a Result: a text fit for the log, and the
// error it came from.
type verifyError struct {
	msg string
	err error
}

func (e *verifyError) Error() string { return e.msg }
func (e *verifyError) Unwrap() error { return e.err }

// newError makes a Result's error: the formatted text, then err's, with
// anything that looks like a mail address (a word holding an @) left out,
// control and non-UTF-8 bytes replaced, and the whole cut to maxErrLen.
func newError(err error, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if err != nil {
		msg += ": " + err.Error()
	}
	return &verifyError{msg: clean(msg), err: err}
}

func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == utf8.RuneError || !unicode.IsPrint(r) && !unicode.IsSpace(r) {
			return '?'
		}
		return r
	}, s)
	words := strings.Fields(s)
	for i, w := range words {
		if strings.Contains(w, "@") {
			words[i] = "[address]"
		}
	}
	s = strings.Join(words, " ")
	if len(s) > maxErrLen {
		cut := maxErrLen
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}
