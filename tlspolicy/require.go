package tlspolicy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
)

// Source names what a Requirement comes from, for a metrics label.
type Source string

const (
	SourceNone   Source = "none"    // the caller's default
	SourceDANE   Source = "dane"    // DANE TLSA records of the MX host
	SourceMTASTS Source = "mta-sts" // an MTA-STS policy in enforce mode
)

// ErrNotInPolicy is wrapped by the error of Require for an MX host that
// the domain's enforced MTA-STS policy does not list: the host is not to
// be used.
var ErrNotInPolicy = errors.New("MX host not in the MTA-STS policy")

// Requirement is what the SMTP connection to one MX host must have.
type Requirement struct {
	Source Source
	// DANE holds the records the certificate must match, if Source is
	// SourceDANE; the certificate is then not verified with WebPKI.
	DANE DANE
	// STS is the domain's MTA-STS policy as far as it was looked at, for
	// logs: with Source SourceMTASTS one in enforce mode, the host listed.
	STS STS
	// STSError says why no MTA-STS policy could be had, if so; the
	// delivery then goes on as if the domain had none.
	STSError error
}

// Require returns what the SMTP connection to mxHost, a mail exchanger of
// domain, must have, as the package documentation describes:
// mxAuthenticated says that the MX answer (and the host's addresses) were
// DNSSEC-authenticated. An error means that mxHost is not to be used now:
// its TLSA records could not be looked up (wrapping ErrTemporary when that
// may pass), or the domain's enforced MTA-STS policy does not list it
// (wrapping ErrNotInPolicy).
func (c *Checker) Require(ctx context.Context, domain string, mxAuthenticated bool, mxHost string) (Requirement, error) {
	if mxAuthenticated {
		d, err := c.DANE(ctx, mxHost)
		if err != nil {
			return Requirement{Source: SourceNone}, err
		}
		if d.Usable() {
			return Requirement{Source: SourceDANE, DANE: d}, nil
		}
	}
	sts, err := c.STS(ctx, domain)
	if err != nil {
		return Requirement{Source: SourceNone, STSError: err}, nil
	}
	switch {
	case sts.Mode == Enforce && !sts.Matches(mxHost):
		return Requirement{Source: SourceMTASTS, STS: sts},
			fmt.Errorf("tlspolicy: %s is not among the MX hosts of the MTA-STS policy of %s, id %s: %w", mxHost, domain, sts.ID, ErrNotInPolicy)
	case sts.Mode == Enforce:
		return Requirement{Source: SourceMTASTS, STS: sts}, nil
	case sts.Mode == Testing && !sts.Matches(mxHost):
		c.logf("MTA-STS: %s is not among the MX hosts of the policy of %s, id %s, in testing mode: used anyway", mxHost, domain, sts.ID)
	}
	return Requirement{Source: SourceNone, STS: sts}, nil
}

// TLSConfig returns the TLS configuration for the connection to mxHost
// under r: a clone of base (nil: an empty one) with ServerName mxHost.
// For DANE, the certificate is verified by r.DANE.Verify in place of
// WebPKI: InsecureSkipVerify is set, VerifyConnection does the check,
// VerifyPeerCertificate is cleared and the version is TLS 1.2 at least.
func (r Requirement) TLSConfig(base *tls.Config, mxHost string) *tls.Config {
	cfg := &tls.Config{}
	if base != nil {
		cfg = base.Clone()
	}
	host := strings.TrimSuffix(mxHost, ".")
	cfg.ServerName = host
	if r.Source == SourceDANE {
		d := r.DANE
		cfg.InsecureSkipVerify = true
		cfg.VerifyPeerCertificate = nil
		cfg.VerifyConnection = func(cs tls.ConnectionState) error { return d.Verify(cs, host) }
		cfg.MinVersion = max(cfg.MinVersion, tls.VersionTLS12)
	}
	return cfg
}
