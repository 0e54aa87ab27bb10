package tlspolicy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"time"

	"github.com/mjl-/mox/mtasts"
)

// MaxPolicySize is the largest policy read (RFC 8461 section 3.3).
const MaxPolicySize = 64 << 10

// FetchTimeout bounds a policy fetch: connecting, TLS, the request and
// reading the policy. A delivery waits for it, and a policy server answers
// in well under a second; RFC 8461 section 3.3 asks for a timeout only.
const FetchTimeout = 15 * time.Second

// call is a policy fetch under way, which every caller asking for the same
// domain and id waits for.
type call struct {
	done chan struct{}
	sts  STS
	err  error
}

// fetch fetches the policy of domain, given in A-labels, whose TXT record
// has id, and keeps it. One fetch at a time is made per domain and id; one
// that failed is not made again within RetryAfter.
func (c *Checker) fetch(ctx context.Context, domain, id string) (STS, error) {
	key := domain + " " + id
	now := c.now()
	c.mu.Lock()
	e, _ := c.policies.get(domain)
	switch {
	case e.usable(now) && e.sts.ID == id && now.Before(e.refresh):
		// Fetched since the caller looked.
		c.mu.Unlock()
		return e.sts, nil
	case e.failure != nil && e.failedID == id && now.Before(e.failedAt.Add(RetryAfter)):
		c.mu.Unlock()
		return STS{}, e.failure
	}
	cl := c.inflight[key]
	if cl == nil {
		cl = &call{done: make(chan struct{})}
		c.inflight[key] = cl
		// The fetch is not ended by the caller that started it giving up:
		// others may wait for it.
		go c.run(context.WithoutCancel(ctx), cl, key, domain, id)
	}
	c.mu.Unlock()
	select {
	case <-cl.done:
		return cl.sts, cl.err
	case <-ctx.Done():
		return STS{}, temporary(fmt.Errorf("tlspolicy: MTA-STS policy of %s: %w", domain, ctx.Err()))
	}
}

// run makes the fetch of cl and keeps what came of it.
func (c *Checker) run(ctx context.Context, cl *call, key, domain, id string) {
	ctx, cancel := context.WithTimeout(ctx, FetchTimeout)
	defer cancel()
	var sts STS
	policy, err := c.fetchPolicy(ctx, domain)
	if err == nil {
		sts = stsOf(policy, id)
		c.logf("MTA-STS: %s: policy id %s fetched: mode %s, max_age %v, %d MX patterns", domain, id, sts.Mode, sts.MaxAge, len(sts.MX))
	} else {
		c.logf("MTA-STS: %s: policy id %s not fetched, not tried again for %v: %v", domain, id, RetryAfter, err)
	}
	now := c.now()
	c.mu.Lock()
	e, _ := c.policies.get(domain)
	e.domain = domain
	if err == nil {
		e = entry{
			domain:  domain,
			has:     true,
			sts:     sts,
			refresh: now.Add(min(sts.MaxAge, RefreshAfter)),
			expires: now.Add(sts.MaxAge),
		}
	} else {
		e.failedID, e.failedAt, e.failure = id, now, err
	}
	c.policies.put(e)
	delete(c.inflight, key)
	c.mu.Unlock()
	cl.sts, cl.err = sts, err
	close(cl.done)
}

// fetchPolicy fetches and parses https://mta-sts.<domain>/.well-known/mta-sts.txt
// as RFC 8461 section 3.3 says: no redirects, status 200 only, media type
// text/plain, at most MaxPolicySize bytes.
func (c *Checker) fetchPolicy(ctx context.Context, domain string) (*mtasts.Policy, error) {
	url := "https://mta-sts." + domain + "/.well-known/mta-sts.txt"
	fail := func(temp bool, format string, args ...any) error {
		err := fmt.Errorf("tlspolicy: MTA-STS policy %s: "+format, append([]any{url}, args...)...)
		if temp {
			return temporary(err)
		}
		return err
	}
	if c.http == nil {
		return nil, fail(false, "no HTTP client")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fail(false, "%w", err)
	}
	// Policies are kept, so the connection would not be used again soon.
	req.Close = true
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fail(transient(err), "%w", err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return nil, fail(false, "status %s, want 200 (redirects are not followed)", resp.Status)
	default:
		temp := resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout
		return nil, fail(temp, "status %s, want 200", resp.Status)
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "text/plain" {
		return nil, fail(false, "content type %q, want text/plain", resp.Header.Get("Content-Type"))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxPolicySize+1))
	if err != nil {
		return nil, fail(true, "reading: %w", err)
	}
	if len(body) > MaxPolicySize {
		return nil, fail(false, "larger than %d bytes", MaxPolicySize)
	}
	policy, err := mtasts.ParsePolicy(string(body))
	if err != nil {
		return nil, fail(false, "%w", err)
	}
	return policy, nil
}

// transient reports whether a request that failed with err may work later:
// not when the host does not exist or its certificate is not valid.
func transient(err error) bool {
	var de *net.DNSError
	var ce *tls.CertificateVerificationError
	switch {
	case errors.As(err, &de) && de.IsNotFound:
		return false
	case errors.As(err, &ce):
		return false
	}
	return true
}
