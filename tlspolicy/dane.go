package tlspolicy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"

	"github.com/mjl-/adns"
	"github.com/mjl-/mox/dane"
	moxdns "github.com/mjl-/mox/dns"

	"filtermail/dns"
)

// DANE holds the usable TLSA records of an MX host.
type DANE struct {
	records []adns.TLSA
}

// Usable reports whether there are records to verify a connection with.
func (d DANE) Usable() bool { return len(d.records) > 0 }

// Len returns the number of usable records.
func (d DANE) Len() int { return len(d.records) }

// DANE returns the usable TLSA records of mxHost, those of
// _25._tcp.<mxHost>: only when the answer was DNSSEC-authenticated, and
// only those of usage DANE-TA(2) or DANE-EE(3) (RFC 7672 section 3.1.3:
// the PKIX usages are unusable for SMTP) with a selector and matching type
// RFC 6698 defines and, for a digest, data of its length.
//
// No records, or an unauthenticated answer, is a DANE with no records and
// no error. A lookup that fails otherwise is an error, wrapping
// ErrTemporary when the failure may pass: the caller does not use that
// host now (RFC 7672 section 2.2).
func (c *Checker) DANE(ctx context.Context, mxHost string) (DANE, error) {
	name := "_25._tcp." + strings.ToLower(strings.TrimSuffix(mxHost, "."))
	if c.resolver == nil {
		return DANE{}, fmt.Errorf("tlspolicy: DANE: TLSA records %s: no resolver", name)
	}
	ans, err := c.resolver.LookupTLSA(ctx, name)
	var de *net.DNSError
	switch {
	case errors.As(err, &de) && de.IsNotFound:
		return DANE{}, nil
	case err != nil:
		err = fmt.Errorf("tlspolicy: DANE: TLSA records %s: %w", name, err)
		if de != nil && de.IsTemporary {
			err = temporary(err)
		}
		return DANE{}, err
	case !ans.Authenticated:
		return DANE{}, nil
	}
	var d DANE
	for _, r := range ans.Records {
		if usable(r) {
			d.records = append(d.records, adns.TLSA{
				Usage:     adns.TLSAUsage(r.Usage),
				Selector:  adns.TLSASelector(r.Selector),
				MatchType: adns.TLSAMatchType(r.MatchingType),
				CertAssoc: r.Data,
			})
		}
	}
	return d, nil
}

// usable reports whether a TLSA record can verify an SMTP server.
func usable(r dns.TLSARecord) bool {
	switch adns.TLSAUsage(r.Usage) {
	case adns.TLSAUsageDANETA, adns.TLSAUsageDANEEE:
	default:
		return false
	}
	switch adns.TLSASelector(r.Selector) {
	case adns.TLSASelectorCert, adns.TLSASelectorSPKI:
	default:
		return false
	}
	switch adns.TLSAMatchType(r.MatchingType) {
	case adns.TLSAMatchTypeFull:
		return len(r.Data) > 0
	case adns.TLSAMatchTypeSHA256:
		return len(r.Data) == 32
	case adns.TLSAMatchTypeSHA512:
		return len(r.Data) == 64
	}
	return false
}

// Verify checks the TLS connection state of a connection to mxHost against
// the records: DANE-EE matches the server's certificate or its public key
// alone, with no regard to names or dates (RFC 7672 section 3.1.1);
// DANE-TA matches a certificate of the chain the server sent, which must
// then be valid for mxHost (section 3.1.2). It is meant as
// tls.Config.VerifyConnection, with InsecureSkipVerify set by the caller
// (see Requirement.TLSConfig).
func (d DANE) Verify(cs tls.ConnectionState, mxHost string) error {
	host := strings.TrimSuffix(mxHost, ".")
	if len(d.records) == 0 {
		return fmt.Errorf("tlspolicy: DANE: no usable TLSA records to verify %s with", host)
	}
	allowed, err := moxdns.ParseDomainLax(host)
	if err != nil {
		// A DANE-EE record needs no name.
		allowed = moxdns.Domain{ASCII: strings.ToLower(host)}
	}
	// mox logs at debug level to stderr unless given a logger.
	quiet := slog.New(slog.DiscardHandler)
	ok, _, err := dane.Verify(quiet, d.records, cs, allowed, nil, nil)
	switch {
	case ok:
		return nil
	case err != nil:
		return fmt.Errorf("tlspolicy: DANE: certificate of %s: %w: %w", host, dane.ErrNoMatch, err)
	}
	return fmt.Errorf("tlspolicy: DANE: certificate of %s: %w (%d records)", host, dane.ErrNoMatch, len(d.records))
}
