package transport

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"

	"github.com/emersion/go-smtp"
	"golang.org/x/net/idna"
)

// destination is where mail for one domain goes.
type destination struct {
	domain string
	// hosts are the mail exchangers to try, the most preferred first: MX
	// hosts, the domain itself without MX records, or an IP literal's
	// address.
	hosts []string
	// verify: certificates are checked against the host names with the
	// system roots. Not for IP literals and test domains ("_…").
	verify bool
	// plain: SMTP goes without TLS, to a domain known to take mail only so.
	plain bool
	// authenticated: the MX answer was DNSSEC-authenticated.
	authenticated bool
	// literal: the domain is an IP literal; it has no TLS policy.
	literal bool
}

// plainDomains take mail over SMTP only without TLS.
var plainDomains = map[string]bool{"nauta.cu": true}

// domainOf returns the domain of an address, lower case, or "" when addr
// has none.
func domainOf(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 || i == len(addr)-1 {
		return ""
	}
	return strings.ToLower(strings.TrimSuffix(addr[i+1:], "."))
}

// ipLiteral returns the address of a domain literal: "[192.0.2.1]" or
// "[IPv6:2001:db8::1]" (RFC 5321, section 4.1.3).
func ipLiteral(domain string) (netip.Addr, bool) {
	if len(domain) < 2 || domain[0] != '[' || domain[len(domain)-1] != ']' {
		return netip.Addr{}, false
	}
	s := domain[1 : len(domain)-1]
	if len(s) > 5 && strings.EqualFold(s[:5], "ipv6:") {
		ip, err := netip.ParseAddr(s[5:])
		return ip, err == nil && ip.Is6()
	}
	ip, err := netip.ParseAddr(s)
	return ip, err == nil && ip.Is4()
}

// Replies that end a delivery before any relay is asked.
var (
	errBadAddress = reply(550, smtp.EnhancedCode{5, 1, 3}, "Bad recipient address syntax")
	errNullMX     = reply(556, smtp.EnhancedCode{5, 1, 10}, "Recipient domain accepts no mail (null MX)")
	errNoDomain   = reply(550, smtp.EnhancedCode{5, 1, 2}, "Recipient domain not found")
)

// route finds where mail for domain goes, or the reply that ends delivery
// to it: a domain that does not exist or takes no mail is a 5xx, trouble
// with DNS a 4xx.
func route(ctx context.Context, r Resolver, domain string) (destination, *smtp.SMTPError) {
	if ip, ok := ipLiteral(domain); ok {
		return destination{domain: domain, hosts: []string{ip.String()}, literal: true}, nil
	}
	if domain == "" || strings.ContainsAny(domain, "[]/\\ ") || net.ParseIP(domain) != nil {
		return destination{}, errBadAddress
	}
	// An internationalized domain is looked up by its ASCII form. (An
	// ASCII one stays as it is: test relays' names start with "_", which
	// IDNA's rules refuse.)
	if !isASCII(domain) {
		ascii, err := idna.Lookup.ToASCII(domain)
		if err != nil {
			return destination{}, errBadAddress
		}
		domain = ascii
	}
	dest := destination{
		domain: domain,
		verify: !strings.HasPrefix(domain, "_"),
		plain:  plainDomains[domain],
	}
	mx, err := r.LookupMX(ctx, domain)
	var derr *net.DNSError
	switch {
	case err == nil:
	case errors.As(err, &derr) && derr.IsNotFound:
		return destination{}, errNoDomain
	default:
		return destination{}, reply(451, smtp.EnhancedCode{4, 4, 3}, "MX lookup failed, try again later: %s", dnsReason(err))
	}
	if mx.Null {
		return destination{}, errNullMX
	}
	dest.hosts = mx.Hosts
	if len(dest.hosts) == 0 {
		dest.hosts = []string{domain} // implicit MX, RFC 5321 section 5.1
	}
	dest.authenticated = mx.Authenticated
	return dest, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// dnsReason says why a lookup failed, without the resolver's address.
func dnsReason(err error) string {
	var derr *net.DNSError
	if errors.As(err, &derr) {
		switch {
		case derr.IsTimeout:
			return "timeout"
		case derr.Err != "":
			return derr.Err
		}
	}
	return "error"
}
