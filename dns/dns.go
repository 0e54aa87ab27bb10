// Package dns makes the DNS lookups of the daemon: it asks one recursive
// resolver (the relay's validating unbound on 127.0.0.1, or the one named by
// filtermail_dns_resolver) and does no recursion of its own.
//
// Queries ask for recursion (RD) and carry EDNS0 with the DO bit, so that a
// validating resolver reports in the AD bit whether it validated the answer
// with DNSSEC. They go over UDP and are asked again over TCP when the answer
// comes back truncated.
//
// Every error is a *net.DNSError naming the queried name: a name that does
// not exist (NXDOMAIN) or has no record of the type asked (NODATA) has
// IsNotFound set; SERVFAIL, REFUSED, timeouts and network errors have
// IsTemporary set (and IsTimeout for timeouts), so that callers such as
// go-msgauth's DKIM verifier can tell "try again later" from "no".
package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
)

// QueryTimeout bounds one query to the resolver, over UDP or over TCP; a
// deadline of the caller's context that comes sooner wins.
const QueryTimeout = 5 * time.Second

// udpSize is the EDNS0 payload size announced for answers over UDP: the size
// the DNS flag day 2020 settled on, which avoids IP fragmentation.
const udpSize = 1232

// maxCNAMEs bounds the CNAME chain followed inside one answer.
const maxCNAMEs = 8

// resolvConf is where the system's resolver is configured.
const resolvConf = "/etc/resolv.conf"

// fallbackServer is asked when resolv.conf names no resolver.
const fallbackServer = "127.0.0.1:53"

// Resolver asks one recursive DNS server. It is safe for concurrent use.
type Resolver struct {
	server string
	// cache, if set, answers exchange in place of the server: the
	// resolver of a Cache, whose lookups read their answers from it.
	cache *Cache
}

// NewResolver returns a resolver that asks server, given as host:port with
// an IP address for host. An empty server means the system's resolver: the
// first nameserver of /etc/resolv.conf, or 127.0.0.1:53 if there is none.
func NewResolver(server string) (*Resolver, error) {
	return newResolver(server, resolvConf)
}

func newResolver(server, conf string) (*Resolver, error) {
	if server == "" {
		return &Resolver{server: systemServer(conf)}, nil
	}
	host, port, err := net.SplitHostPort(server)
	if err != nil {
		return nil, fmt.Errorf("DNS resolver %q: want host:port, such as 127.0.0.1:53: %v", server, err)
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return nil, fmt.Errorf("DNS resolver %q: host %q is not an IP address", server, host)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return nil, fmt.Errorf("DNS resolver %q: port %q is not a number from 1 to 65535", server, port)
	}
	return &Resolver{server: server}, nil
}

// systemServer returns the first resolver named in conf.
func systemServer(conf string) string {
	if _, err := os.Stat(conf); err != nil {
		return fallbackServer
	}
	cfg, err := mdns.ClientConfigFromFile(conf)
	if err != nil || len(cfg.Servers) == 0 {
		return fallbackServer
	}
	port := cfg.Port
	if port == "" {
		port = "53"
	}
	return net.JoinHostPort(cfg.Servers[0], port)
}

// Server returns the host:port the resolver asks.
func (r *Resolver) Server() string { return r.server }

// TXT is the answer to a TXT lookup.
type TXT struct {
	// Records holds one string per TXT record: the record's strings
	// joined, as DKIM reads a key split into several strings.
	Records []string
	// TTL is the smallest TTL in the answer.
	TTL time.Duration
	// Authenticated is the AD bit of the answer: the resolver validated it
	// with DNSSEC.
	Authenticated bool
}

// LookupTXT returns the TXT records of name.
func (r *Resolver) LookupTXT(ctx context.Context, name string) (TXT, error) {
	ans, err := r.exchange(ctx, name, mdns.TypeTXT)
	if err != nil {
		return TXT{}, err
	}
	if len(ans.records) == 0 {
		return TXT{}, r.noData(name, mdns.TypeTXT)
	}
	txt := TXT{TTL: ans.ttl, Authenticated: ans.authenticated}
	for _, rr := range ans.records {
		t := rr.(*mdns.TXT)
		var b strings.Builder
		for _, s := range t.Txt {
			b.WriteString(unescape(s))
		}
		txt.Records = append(txt.Records, b.String())
	}
	return txt, nil
}

// answer holds the records of one type that a query found, after the CNAME
// chain in the answer was followed.
type answer struct {
	records       []mdns.RR
	ttl           time.Duration
	authenticated bool
}

// exchange asks the resolver for the records of type qtype at name: over
// UDP, then over TCP if the answer was truncated. It returns the records,
// none if the name has none of that type (NODATA), or a *net.DNSError.
func (r *Resolver) exchange(ctx context.Context, name string, qtype uint16) (answer, error) {
	if r.cache != nil {
		return r.cache.exchange(ctx, name, qtype)
	}
	fqdn, ok := fqdnOf(name)
	if !ok {
		return answer{}, &net.DNSError{Err: "invalid domain name", Name: name, Server: r.server}
	}
	q := new(mdns.Msg)
	q.SetQuestion(fqdn, qtype)
	q.RecursionDesired = true
	q.SetEdns0(udpSize, true)

	reply, err := r.roundTrip(ctx, "udp", q)
	if err == nil && reply.Truncated {
		reply, err = r.roundTrip(ctx, "tcp", q)
	}
	if err != nil {
		return answer{}, r.netError(name, err)
	}
	if len(reply.Question) != 1 || reply.Question[0].Qtype != qtype || !strings.EqualFold(reply.Question[0].Name, fqdn) {
		return answer{}, &net.DNSError{Err: "answer does not match the question", Name: name, Server: r.server, IsTemporary: true}
	}
	switch reply.Rcode {
	case mdns.RcodeSuccess:
	case mdns.RcodeNameError:
		return answer{}, &net.DNSError{Err: "no such host", Name: name, Server: r.server, IsNotFound: true}
	case mdns.RcodeServerFailure, mdns.RcodeRefused:
		return answer{}, &net.DNSError{Err: "server answered " + mdns.RcodeToString[reply.Rcode], Name: name, Server: r.server, IsTemporary: true}
	default:
		return answer{}, &net.DNSError{Err: "server answered " + rcodeName(reply.Rcode), Name: name, Server: r.server}
	}
	return follow(reply, fqdn, qtype), nil
}

// noData is the error for a name without records of type qtype.
func (r *Resolver) noData(name string, qtype uint16) error {
	return &net.DNSError{Err: "no " + mdns.TypeToString[qtype] + " record", Name: name, Server: r.server, IsNotFound: true}
}

// roundTrip sends q over network and reads the answer, within QueryTimeout
// and the deadline of ctx. Cancelling ctx ends the wait.
func (r *Resolver) roundTrip(ctx context.Context, network string, q *mdns.Msg) (*mdns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, QueryTimeout)
	defer cancel()
	c := &mdns.Client{Net: network, UDPSize: udpSize, Timeout: QueryTimeout}
	conn, err := c.DialContext(ctx, r.server)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	reply, _, err := c.ExchangeWithConnContext(ctx, q, conn)
	if err != nil && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return reply, err
}

// netError turns an error of the exchange into a temporary *net.DNSError.
func (r *Resolver) netError(name string, err error) error {
	e := &net.DNSError{Err: err.Error(), Name: name, Server: r.server, IsTemporary: true}
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		e.Err, e.IsTimeout = "i/o timeout", true
	case errors.Is(err, context.Canceled):
		e.Err = "lookup canceled"
	case errors.As(err, &ne) && ne.Timeout():
		e.Err, e.IsTimeout = "i/o timeout", true
	}
	return e
}

// follow returns the records of type qtype that answer fqdn in reply,
// following the CNAME chain the resolver put in the answer section. The TTL
// is the smallest of the records used, CNAMEs included.
func follow(reply *mdns.Msg, fqdn string, qtype uint16) answer {
	ans := answer{authenticated: reply.AuthenticatedData}
	ttl := uint32(0)
	first := true
	use := func(rr mdns.RR) {
		if first || rr.Header().Ttl < ttl {
			ttl = rr.Header().Ttl
		}
		first = false
	}
	owner := fqdn
	for range maxCNAMEs {
		next := ""
		for _, rr := range reply.Answer {
			if c, ok := rr.(*mdns.CNAME); ok && qtype != mdns.TypeCNAME && strings.EqualFold(c.Hdr.Name, owner) {
				use(rr)
				next = c.Target
				break
			}
		}
		if next == "" {
			break
		}
		owner = next
	}
	for _, rr := range reply.Answer {
		if rr.Header().Rrtype == qtype && strings.EqualFold(rr.Header().Name, owner) {
			use(rr)
			ans.records = append(ans.records, rr)
		}
	}
	ans.ttl = time.Duration(ttl) * time.Second
	return ans
}

// fqdnOf returns name as a fully qualified domain name, or false if it is
// not one that can be asked: empty, too long, or holding bytes that are not
// printable ASCII (miekg/dns would read a backslash as an escape).
func fqdnOf(name string) (string, bool) {
	if name == "" || name == "." {
		return "", false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c >= 0x7f || c == '\\' {
			return "", false
		}
	}
	fqdn := mdns.Fqdn(name)
	if _, ok := mdns.IsDomainName(fqdn); !ok {
		return "", false
	}
	return fqdn, true
}

// unescape undoes the escaping miekg/dns applies to the bytes of a
// character-string when it unpacks one: \DDD for a byte outside printable
// ASCII, \" and \\.
func unescape(s string) string {
	i := strings.IndexByte(s, '\\')
	if i < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	b = append(b, s[:i]...)
	for ; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 == len(s) {
			b = append(b, c)
			continue
		}
		if i+3 < len(s) && isDigit(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]) {
			if n := int(s[i+1]-'0')*100 + int(s[i+2]-'0')*10 + int(s[i+3]-'0'); n <= 0xff {
				b = append(b, byte(n))
				i += 3
				continue
			}
		}
		i++
		b = append(b, s[i])
	}
	return string(b)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func rcodeName(rcode int) string {
	if s, ok := mdns.RcodeToString[rcode]; ok {
		return s
	}
	return "rcode " + strconv.Itoa(rcode)
}
