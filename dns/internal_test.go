package dns

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

func TestSystemServer(t *testing.T) {
	dir := t.TempDir()
	for conf, want := range map[string]string{
		"nameserver 192.0.2.53\nnameserver 192.0.2.54\n": "192.0.2.53:53",
		"# unbound\nnameserver ::1\n":                    "[::1]:53",
		"search example.org\n":                           fallbackServer,
	} {
		path := filepath.Join(dir, "resolv.conf")
		if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		r, err := newResolver("", path)
		if err != nil {
			t.Fatal(err)
		}
		if r.Server() != want {
			t.Errorf("resolv.conf %q: server %q, want %q", conf, r.Server(), want)
		}
	}
	r, err := newResolver("", filepath.Join(dir, "missing"))
	if err != nil || r.Server() != fallbackServer {
		t.Errorf("no resolv.conf: %v %v, want %s", r, err, fallbackServer)
	}
}

func TestFollowTTL(t *testing.T) {
	m := new(mdns.Msg)
	rr := func(s string) mdns.RR {
		r, err := mdns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	m.Answer = []mdns.RR{
		rr("a.example.org. 600 IN CNAME b.example.org."),
		rr("b.example.org. 300 IN TXT \"one\""),
		rr("b.example.org. 120 IN TXT \"two\""),
		rr("other.example.org. 5 IN TXT \"not ours\""),
	}
	ans := follow(m, "a.example.org.", mdns.TypeTXT)
	if len(ans.records) != 2 || ans.ttl != 120*time.Second {
		t.Errorf("%d records, TTL %v; want 2, 120s", len(ans.records), ans.ttl)
	}
	m.Answer[0].Header().Ttl = 60
	if ans := follow(m, "a.example.org.", mdns.TypeTXT); ans.ttl != 60*time.Second {
		t.Errorf("TTL %v, want the CNAME's 60s", ans.ttl)
	}
}

// FuzzUnescape checks that what miekg/dns makes of the bytes of a TXT
// string on the wire comes back as those bytes.
func FuzzUnescape(f *testing.F) {
	f.Add([]byte("v=DKIM1; k=rsa; p=MIIB"))
	f.Add([]byte("\"\\\x00\xff\\065"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) > 255 {
			raw = raw[:255]
		}
		// Pack the bytes as one character-string: \DDD for every byte.
		var esc bytes.Buffer
		for _, c := range raw {
			esc.WriteString("\\")
			esc.WriteByte('0' + c/100)
			esc.WriteByte('0' + c/10%10)
			esc.WriteByte('0' + c%10)
		}
		m := new(mdns.Msg)
		m.SetQuestion("example.org.", mdns.TypeTXT)
		m.Answer = []mdns.RR{&mdns.TXT{
			Hdr: mdns.RR_Header{Name: "example.org.", Rrtype: mdns.TypeTXT, Class: mdns.ClassINET},
			Txt: []string{esc.String()},
		}}
		wire, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		var back mdns.Msg
		if err := back.Unpack(wire); err != nil {
			t.Fatal(err)
		}
		got := unescape(back.Answer[0].(*mdns.TXT).Txt[0])
		if got != string(raw) {
			t.Fatalf("unescape = %q, want %q", got, raw)
		}
	})
}
