package dns

import (
	"cmp"
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
)

// MX is the answer to an MX lookup.
type MX struct {
	// Hosts are the mail exchangers, the most preferred first, without
	// the final dot; those of equal preference in the resolver's order.
	// Empty when the domain has no MX record: then the domain itself is
	// the mail exchanger (RFC 5321, section 5.1).
	Hosts []string
	// Null is set for a null MX (RFC 7505): the domain takes no mail.
	Null          bool
	TTL           time.Duration
	Authenticated bool
}

// LookupMX returns the mail exchangers of domain. A domain that does not
// exist is an error with IsNotFound set; one that exists without MX
// records is an MX without hosts.
func (r *Resolver) LookupMX(ctx context.Context, domain string) (MX, error) {
	ans, err := r.exchange(ctx, domain, mdns.TypeMX)
	if err != nil {
		return MX{}, err
	}
	mx := MX{TTL: ans.ttl, Authenticated: ans.authenticated}
	records := make([]*mdns.MX, 0, len(ans.records))
	for _, rr := range ans.records {
		records = append(records, rr.(*mdns.MX))
	}
	if len(records) == 1 && records[0].Mx == "." {
		mx.Null = true
		return mx, nil
	}
	slices.SortStableFunc(records, func(a, b *mdns.MX) int { return cmp.Compare(a.Preference, b.Preference) })
	for _, rec := range records {
		// A "." among other exchangers is no host to deliver to.
		if host := strings.TrimSuffix(rec.Mx, "."); host != "" {
			mx.Hosts = append(mx.Hosts, host)
		}
	}
	return mx, nil
}

// Addrs is the answer to an address lookup.
type Addrs struct {
	IPs           []netip.Addr // the IPv6 addresses first, then the IPv4 ones
	TTL           time.Duration
	Authenticated bool // both answers had the AD bit
}

// LookupAddrs returns the IPv6 and IPv4 addresses of host, asking for both
// at once. It fails only when neither lookup found an address: with
// IsNotFound set when the host has none, and temporary when one lookup
// failed for a temporary reason.
func (r *Resolver) LookupAddrs(ctx context.Context, host string) (Addrs, error) {
	type result struct {
		ans answer
		err error
	}
	aaaa := make(chan result, 1)
	go func() {
		ans, err := r.exchange(ctx, host, mdns.TypeAAAA)
		aaaa <- result{ans, err}
	}()
	v4, err4 := r.exchange(ctx, host, mdns.TypeA)
	v6 := <-aaaa

	var addrs Addrs
	first := true
	for _, res := range []result{v6, {v4, err4}} {
		if res.err != nil {
			continue
		}
		for _, rr := range res.ans.records {
			var ip net.IP
			switch rr := rr.(type) {
			case *mdns.AAAA:
				ip = rr.AAAA
			case *mdns.A:
				ip = rr.A
			}
			if a, ok := netip.AddrFromSlice(ip); ok {
				addrs.IPs = append(addrs.IPs, a.Unmap())
			}
		}
		if len(res.ans.records) > 0 {
			if first || res.ans.ttl < addrs.TTL {
				addrs.TTL = res.ans.ttl
			}
			addrs.Authenticated = res.ans.authenticated && (first || addrs.Authenticated)
			first = false
		}
	}
	if len(addrs.IPs) > 0 {
		return addrs, nil
	}
	// No address: a temporary failure of either lookup says more than a
	// name not found by the other.
	for _, err := range []error{v6.err, err4} {
		if ne, ok := err.(*net.DNSError); ok && ne.IsTemporary {
			return Addrs{}, err
		}
	}
	if err4 != nil {
		return Addrs{}, err4
	}
	if v6.err != nil {
		return Addrs{}, v6.err
	}
	return Addrs{}, r.noData(host, mdns.TypeA)
}
