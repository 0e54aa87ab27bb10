// Package dnstest runs a DNS server on loopback for tests: it answers, over
// UDP and TCP on one port of 127.0.0.1, from zone data the test sets, as a
// recursive resolver would (RA set, CNAME chains in the answer). It can also
// misbehave on purpose: answer SERVFAIL or REFUSED, never answer, truncate
// its UDP answers, and set or clear the DNSSEC AD bit, for all answers or
// for those of one name.
package dnstest

import (
	"encoding/hex"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// DefaultTTL is the TTL of the records served until the test sets another.
const DefaultTTL = 300 * time.Second

// bindAttempts is how many UDP ports Start tries before it gives up finding
// one whose TCP twin is free too.
const bindAttempts = 8

// Server is a DNS server for one test. All its methods are safe for
// concurrent use, also while queries are being answered.
type Server struct {
	addr string

	mu            sync.Mutex
	names         map[string]*node
	ttl           time.Duration
	authenticated bool
	ad            map[string]bool // the AD bit of a name's answers, over authenticated
	queries       map[string]int
	last          map[string]*mdns.Msg
}

// node is what the server knows of one name.
type node struct {
	rrs      []mdns.RR // every record of the name, TTLs set when answering
	rcode    int       // if not success, the answer to every query for the name
	stall    bool      // never answer
	truncate bool      // answer UDP queries with TC set and nothing else
}

// Start starts a server on 127.0.0.1, UDP and TCP on the same port. It is
// stopped when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	pc, ln, err := listen()
	if err != nil {
		t.Fatalf("dnstest: %v", err)
	}
	s := &Server{
		addr:    pc.LocalAddr().String(),
		names:   map[string]*node{},
		ttl:     DefaultTTL,
		ad:      map[string]bool{},
		queries: map[string]int{},
		last:    map[string]*mdns.Msg{},
	}
	udp := &mdns.Server{PacketConn: pc, Handler: s}
	tcp := &mdns.Server{Listener: ln, Handler: s}
	for _, srv := range []*mdns.Server{udp, tcp} {
		started := make(chan struct{})
		done := make(chan error, 1)
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { done <- srv.ActivateAndServe() }()
		select {
		case <-started:
		case err := <-done:
			t.Fatalf("dnstest: serving: %v", err)
		}
		t.Cleanup(func() {
			srv.Shutdown()
			<-done
		})
	}
	return s
}

// listen binds a UDP socket on a port the system picks, then a TCP socket
// on the same port number. If that TCP port is taken, it lets both go and
// tries again with another UDP port.
func listen() (net.PacketConn, net.Listener, error) {
	var lastErr error
	for range bindAttempts {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, err
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		lastErr = err
	}
	return nil, nil, fmt.Errorf("no port free for both UDP and TCP after %d attempts: %v", bindAttempts, lastErr)
}

// Addr returns the server's host:port.
func (s *Server) Addr() string { return s.addr }

// key is how names are held: lower case, without the final dot.
func key(name string) string {
	return strings.TrimSuffix(strings.ToLower(name), ".")
}

// node returns the node of name, making it if needed. s.mu is held.
func (s *Server) node(name string) *node {
	k := key(name)
	n := s.names[k]
	if n == nil {
		n = &node{}
		s.names[k] = n
	}
	return n
}

// set replaces the records of type rrtype at name with rrs.
func (s *Server) set(name string, rrtype uint16, rrs []mdns.RR) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.node(name)
	kept := n.rrs[:0:0]
	for _, rr := range n.rrs {
		if rr.Header().Rrtype != rrtype {
			kept = append(kept, rr)
		}
	}
	n.rrs = append(kept, rrs...)
}

func hdr(name string, rrtype uint16) mdns.RR_Header {
	return mdns.RR_Header{Name: mdns.Fqdn(name), Rrtype: rrtype, Class: mdns.ClassINET}
}

// TXT sets the TXT records of name, replacing those it had: one record per
// string, each split into strings of at most 255 bytes as zone files split
// long records. Bytes are served as given. No records leaves the name with
// no TXT record (NODATA).
func (s *Server) TXT(name string, records ...string) {
	rrs := make([]mdns.RR, 0, len(records))
	for _, r := range records {
		rrs = append(rrs, &mdns.TXT{Hdr: hdr(name, mdns.TypeTXT), Txt: split(r)})
	}
	s.set(name, mdns.TypeTXT, rrs)
}

// split cuts a record into character-strings of at most 255 bytes, escaped
// for miekg/dns, which reads \DDD and \X when it packs a string.
func split(record string) []string {
	var parts []string
	for {
		n := min(len(record), 255)
		parts = append(parts, escape(record[:n]))
		record = record[n:]
		if record == "" {
			return parts
		}
	}
}

func escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '\\' || c < ' ' || c > '~' {
			fmt.Fprintf(&b, "\\%03d", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// A sets the IPv4 addresses of name, replacing those it had.
func (s *Server) A(name string, ips ...string) {
	s.set(name, mdns.TypeA, s.addrs(name, mdns.TypeA, ips))
}

// AAAA sets the IPv6 addresses of name, replacing those it had.
func (s *Server) AAAA(name string, ips ...string) {
	s.set(name, mdns.TypeAAAA, s.addrs(name, mdns.TypeAAAA, ips))
}

func (s *Server) addrs(name string, rrtype uint16, ips []string) []mdns.RR {
	rrs := make([]mdns.RR, 0, len(ips))
	for _, ip := range ips {
		a := net.ParseIP(ip)
		if a == nil {
			panic("dnstest: not an IP address: " + ip)
		}
		if rrtype == mdns.TypeA {
			if a.To4() == nil {
				panic("dnstest: not an IPv4 address: " + ip)
			}
			rrs = append(rrs, &mdns.A{Hdr: hdr(name, rrtype), A: a.To4()})
		} else {
			if a.To4() != nil {
				panic("dnstest: not an IPv6 address: " + ip)
			}
			rrs = append(rrs, &mdns.AAAA{Hdr: hdr(name, rrtype), AAAA: a})
		}
	}
	return rrs
}

// MX adds a mail exchanger to name.
func (s *Server) MX(name string, pref uint16, host string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.node(name)
	n.rrs = append(n.rrs, &mdns.MX{Hdr: hdr(name, mdns.TypeMX), Preference: pref, Mx: mdns.Fqdn(host)})
}

// TLSA adds a TLSA record (RFC 6698) to name, such as
// _25._tcp.mx.example.org: its usage, selector and matching type, and the
// certificate association data.
func (s *Server) TLSA(name string, usage, selector, matching uint8, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.node(name)
	n.rrs = append(n.rrs, &mdns.TLSA{
		Hdr:          hdr(name, mdns.TypeTLSA),
		Usage:        usage,
		Selector:     selector,
		MatchingType: matching,
		Certificate:  hex.EncodeToString(data),
	})
}

// CNAME makes name an alias of target, replacing its other records: the
// answer for name holds the CNAME and then the answer for target.
func (s *Server) CNAME(name, target string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.node(name).rrs = []mdns.RR{&mdns.CNAME{Hdr: hdr(name, mdns.TypeCNAME), Target: mdns.Fqdn(target)}}
}

// Remove forgets name: its records and how it misbehaves, its AD bit
// included. It then does not exist (NXDOMAIN). Its query count stays.
func (s *Server) Remove(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.names, key(name))
	delete(s.ad, key(name))
}

// Rcode makes every query for name answered with rcode, such as
// mdns.RcodeServerFailure or mdns.RcodeRefused; mdns.RcodeSuccess answers
// from the records again.
func (s *Server) Rcode(name string, rcode int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.node(name).rcode = rcode
}

// Stall makes the server read queries for name and never answer them.
func (s *Server) Stall(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.node(name).stall = true
}

// Truncate makes the server answer UDP queries for name with the TC bit set
// and no records, so that the client asks again over TCP.
func (s *Server) Truncate(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.node(name).truncate = true
}

// Authenticated sets or clears the AD bit of the answers, as a validating
// resolver does for answers it validated with DNSSEC.
func (s *Server) Authenticated(ad bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.authenticated = ad
}

// AuthenticatedName sets or clears the AD bit of the answers to queries for
// name, whatever Authenticated set for the others: a signed zone seen
// through a validating resolver among unsigned ones, or the other way
// round. It does not make name exist.
func (s *Server) AuthenticatedName(name string, ad bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ad[key(name)] = ad
}

// TTL sets the TTL of every record served from now on (whole seconds).
func (s *Server) TTL(ttl time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ttl = ttl
}

// Queries returns how many queries for name the server has received, of
// any type, over UDP and TCP.
func (s *Server) Queries(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries[key(name)]
}

// Last returns the last query the server received for name, or nil.
func (s *Server) Last(name string) *mdns.Msg {
	s.mu.Lock()
	defer s.mu.Unlock()
	if q := s.last[key(name)]; q != nil {
		return q.Copy()
	}
	return nil
}

// ServeDNS answers one query. It implements mdns.Handler.
func (s *Server) ServeDNS(w mdns.ResponseWriter, q *mdns.Msg) {
	if len(q.Question) != 1 {
		m := new(mdns.Msg)
		m.SetRcode(q, mdns.RcodeFormatError)
		w.WriteMsg(m)
		return
	}
	question := q.Question[0]
	_, udp := w.RemoteAddr().(*net.UDPAddr)

	s.mu.Lock()
	s.queries[key(question.Name)]++
	s.last[key(question.Name)] = q.Copy()
	n := s.names[key(question.Name)]
	if n != nil && n.stall {
		s.mu.Unlock()
		return
	}
	m := new(mdns.Msg)
	m.SetReply(q)
	m.RecursionAvailable = true
	switch {
	case n == nil:
		m.Rcode = mdns.RcodeNameError
	case n.rcode != mdns.RcodeSuccess:
		m.Rcode = n.rcode
	case n.truncate && udp:
		m.Truncated = true
	default:
		m.Rcode = s.answer(m, question)
	}
	if m.Rcode == mdns.RcodeSuccess || m.Rcode == mdns.RcodeNameError {
		m.AuthenticatedData = s.authenticated
		if ad, ok := s.ad[key(question.Name)]; ok {
			m.AuthenticatedData = ad
		}
	}
	s.mu.Unlock()

	size := mdns.MinMsgSize
	if opt := q.IsEdns0(); opt != nil {
		m.SetEdns0(opt.UDPSize(), opt.Do())
		size = max(size, int(opt.UDPSize()))
	}
	if udp {
		m.Truncate(size)
	}
	w.WriteMsg(m)
}

// answer fills the answer section of m for question, following CNAMEs in
// the zone, and returns the rcode. s.mu is held.
func (s *Server) answer(m *mdns.Msg, question mdns.Question) int {
	name := question.Name
	ttl := uint32(s.ttl / time.Second)
	for range 8 {
		n := s.names[key(name)]
		if n == nil {
			return mdns.RcodeNameError // for the name asked or the end of its chain
		}
		next := ""
		for _, rr := range n.rrs {
			h := rr.Header()
			if h.Rrtype == question.Qtype || (h.Rrtype == mdns.TypeCNAME && question.Qtype != mdns.TypeCNAME) {
				rr = mdns.Copy(rr)
				rr.Header().Ttl = ttl
				m.Answer = append(m.Answer, rr)
				if c, ok := rr.(*mdns.CNAME); ok {
					next = c.Target
				}
			}
		}
		if next == "" {
			return mdns.RcodeSuccess
		}
		name = next
	}
	return mdns.RcodeServerFailure // a CNAME loop
}
