package dns

import (
	"context"
	"encoding/hex"
	"time"

	mdns "github.com/miekg/dns"
)

// TLSA is the answer to a TLSA lookup (RFC 6698), such as that of
// _25._tcp.<mx host> for DANE (RFC 7672).
type TLSA struct {
	// Records are the TLSA records in the resolver's order. Empty when
	// the name exists without TLSA records (NODATA).
	Records []TLSARecord
	TTL     time.Duration
	// Authenticated is the AD bit of the answer: the resolver validated
	// the records, or their absence, with DNSSEC.
	Authenticated bool
}

// TLSARecord is one TLSA record: the three parameters and the certificate
// association data, as RFC 6698 section 2.1 names them.
type TLSARecord struct {
	Usage        uint8 // 0 PKIX-TA, 1 PKIX-EE, 2 DANE-TA, 3 DANE-EE
	Selector     uint8 // 0 the whole certificate, 1 its SubjectPublicKeyInfo
	MatchingType uint8 // 0 the selected bytes, 1 their SHA-256, 2 their SHA-512
	Data         []byte
}

// LookupTLSA returns the TLSA records of name, the full owner name such as
// _25._tcp.mx.example.org. A name that does not exist is an error with
// IsNotFound set; one that exists without TLSA records is a TLSA without
// records.
func (r *Resolver) LookupTLSA(ctx context.Context, name string) (TLSA, error) {
	ans, err := r.exchange(ctx, name, mdns.TypeTLSA)
	if err != nil {
		return TLSA{}, err
	}
	tlsa := TLSA{TTL: ans.ttl, Authenticated: ans.authenticated}
	for _, rr := range ans.records {
		t := rr.(*mdns.TLSA)
		// miekg/dns holds the data as hex it made itself from the wire.
		data, err := hex.DecodeString(t.Certificate)
		if err != nil {
			continue
		}
		tlsa.Records = append(tlsa.Records, TLSARecord{
			Usage:        t.Usage,
			Selector:     t.Selector,
			MatchingType: t.MatchingType,
			Data:         data,
		})
	}
	return tlsa, nil
}
