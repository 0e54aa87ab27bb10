package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"filtermail/dns"
	"filtermail/tlspolicy"
)

// Resolver is what the transport asks of DNS; *dns.Resolver answers it.
// TXT and TLSA records are for MTA-STS and DANE.
type Resolver interface {
	LookupMX(ctx context.Context, domain string) (dns.MX, error)
	LookupAddrs(ctx context.Context, host string) (dns.Addrs, error)
	tlspolicy.Resolver
}

// Dialing: Postfix's smtp_connect_timeout, its smtp_mx_address_limit,
// and the delay after which the next address is tried while the first
// is still connecting (RFC 8305, "Happy Eyeballs").
const (
	connectTimeout = 30 * time.Second
	maxAddrs       = 5
	fallbackDelay  = 250 * time.Millisecond
)

// dialer connects to hosts whose addresses it looks up itself, through the
// transport's resolver, racing IPv6 and IPv4.
type dialer struct {
	resolver Resolver
}

// DialContext connects to addr, a host name or IP address with a port.
func (d *dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else {
		addrs, err := d.resolver.LookupAddrs(ctx, host)
		if err != nil {
			return nil, fmt.Errorf("looking up %s: %w", host, err)
		}
		ips = addrs.IPs
	}
	return race(ctx, interleave(ips), port)
}

// interleave orders addresses IPv6, IPv4, IPv6, … as RFC 8305 asks, the
// first family first, at most maxAddrs of them.
func interleave(ips []netip.Addr) []netip.Addr {
	var v6, v4 []netip.Addr
	for _, ip := range ips {
		if ip.Is4() || ip.Is4In6() {
			v4 = append(v4, ip.Unmap())
		} else {
			v6 = append(v6, ip)
		}
	}
	first, second := v6, v4
	if len(ips) > 0 && (ips[0].Is4() || ips[0].Is4In6()) {
		first, second = v4, v6
	}
	var out []netip.Addr
	for i := 0; len(out) < maxAddrs && (i < len(first) || i < len(second)); i++ {
		if i < len(first) {
			out = append(out, first[i])
		}
		if i < len(second) && len(out) < maxAddrs {
			out = append(out, second[i])
		}
	}
	return out
}

// race connects to the addresses in turn, starting the next one when the
// one before failed or has not connected within fallbackDelay, and
// returns the first connection made; the others are closed.
func race(ctx context.Context, ips []netip.Addr, port string) (net.Conn, error) {
	if len(ips) == 0 {
		return nil, errors.New("no address to connect to")
	}
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	type attempt struct {
		conn net.Conn
		err  error
	}
	results := make(chan attempt, len(ips))
	var nd net.Dialer
	start := func(ip netip.Addr) {
		go func() {
			c, err := nd.DialContext(ctx, "tcp", net.JoinHostPort(ip.String(), port))
			results <- attempt{c, err}
		}()
	}
	start(ips[0])
	next, pending := 1, 1
	timer := time.NewTimer(fallbackDelay)
	defer timer.Stop()
	var errs []error
	for pending > 0 {
		select {
		case <-timer.C:
			if next < len(ips) {
				start(ips[next])
				next, pending = next+1, pending+1
				timer.Reset(fallbackDelay)
			}
		case a := <-results:
			pending--
			if a.err == nil {
				// Connections still being made are closed as they come.
				go func(n int) {
					for range n {
						if a := <-results; a.err == nil {
							a.conn.Close()
						}
					}
				}(pending)
				return a.conn, nil
			}
			errs = append(errs, a.err)
			if next < len(ips) {
				start(ips[next])
				next, pending = next+1, pending+1
				timer.Reset(fallbackDelay)
			}
		}
	}
	return nil, errors.Join(errs...)
}
