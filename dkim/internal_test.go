package dkim

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	msgauth "github.com/emersion/go-msgauth/dkim"
)

func TestCacheBound(t *testing.T) {
	c := newCache(3)
	now := time.Unix(1_700_000_000, 0)
	put := func(name string) {
		c.put(cacheEntry{name: name, records: []string{name}, expires: now.Add(time.Hour)})
		if c.len() > 3 {
			t.Fatalf("%d entries, more than 3", c.len())
		}
	}
	for i := range 10 {
		put(fmt.Sprint("k", i))
	}
	for _, name := range []string{"k7", "k8", "k9"} {
		if _, ok := c.get(name, now); !ok {
			t.Errorf("%s dropped", name)
		}
	}
	// k7 was used least recently: it goes first.
	c.get("k8", now)
	c.get("k9", now)
	put("new")
	if _, ok := c.get("k7", now); ok {
		t.Error("k7 kept, though used least recently")
	}
	for _, name := range []string{"k8", "k9", "new"} {
		if _, ok := c.get(name, now); !ok {
			t.Errorf("%s dropped", name)
		}
	}
	// Replacing an entry does not grow the cache.
	put("new")
	put("new")
	if c.len() != 3 {
		t.Errorf("%d entries after replacing, want 3", c.len())
	}
}

func TestCacheExpiry(t *testing.T) {
	c := newCache(10)
	now := time.Unix(1_700_000_000, 0)
	c.put(cacheEntry{name: "k", records: []string{"r"}, authenticated: true, expires: now.Add(time.Minute)})
	if e, ok := c.get("k", now.Add(time.Minute-time.Nanosecond)); !ok || !e.authenticated || e.records[0] != "r" {
		t.Errorf("get before expiry: %+v %v", e, ok)
	}
	if _, ok := c.get("k", now.Add(time.Minute)); ok {
		t.Error("get at expiry found the entry")
	}
	if c.len() != 0 {
		t.Errorf("expired entry kept: %d entries", c.len())
	}
}

func TestClean(t *testing.T) {
	for in, want := range map[string]string{
		"d=example.org s=sel: dkim: body hash did not verify":  "d=example.org s=sel: dkim: body hash did not verify",
		`malformed time: parsing "alice@example.org": invalid`: "malformed time: parsing [address] invalid",
		"line\r\nbreak\x00 and \xff":                           "line break? and ?",
	} {
		if got := clean(in); got != want {
			t.Errorf("clean(%q) = %q, want %q", in, got, want)
		}
	}
	long := clean(string(bytes.Repeat([]byte("é"), 400)))
	if len(long) > maxErrLen+len("…") || !utf8Valid(long) {
		t.Errorf("clean cut %d bytes: %q", len(long), long)
	}
}

func utf8Valid(s string) bool { return string([]rune(s)) == s }

func TestReadHeader(t *testing.T) {
	for in, want := range map[string]string{
		"":                                 "\r\n",
		"\r\nbody":                         "\r\n",
		"A: 1\r\n\r\nbody":                 "A: 1\r\n\r\n",
		"A: 1\n\nbody":                     "A: 1\n\n",
		"A: 1\r\n B\r\n\r\n":               "A: 1\r\n B\r\n\r\n",
		"A: 1\r\n":                         "A: 1\r\n\r\n",
		"A: 1":                             "A: 1\r\n\r\n",
		"A: 1\r\n \r\n\r\n":                "A: 1\r\n \r\n\r\n",
		"A: " + string(make([]byte, 5000)): "A: " + string(make([]byte, 5000)) + "\r\n\r\n",
	} {
		// Lines longer than the buffer, and ends split across reads.
		br := bufio.NewReaderSize(iotest.HalfReader(bytes.NewReader([]byte(in))), 16)
		got, err := readHeader(br, 1<<20)
		if err != nil || string(got) != want {
			t.Errorf("readHeader(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	big := bytes.Repeat([]byte("X: 1\r\n"), 1000)
	if _, err := readHeader(bufio.NewReader(bytes.NewReader(big)), 5999); !errors.Is(err, errHeaderTooLarge) {
		t.Errorf("header over the limit: %v", err)
	}
}

func TestBodyReader(t *testing.T) {
	body := "a\r\n" + string(bytes.Repeat([]byte("\r\n \t"), 10)) + "b\r\n\r\n"
	for limit, tripped := range map[int]bool{22: false, 21: true} {
		b := &bodyReader{r: iotest.OneByteReader(bytes.NewReader([]byte(body))), limit: limit}
		out, err := io.ReadAll(b)
		if err != nil || (b.tripped != nil) != tripped {
			t.Errorf("limit %d: tripped %v, %v", limit, b.tripped, err)
		}
		if !bytes.HasPrefix([]byte(body), out) || !tripped && len(out) != len(body) {
			t.Errorf("limit %d: read %q", limit, out)
		}
	}
}

// FuzzBodyReader checks that the run of line ends is counted the same
// however the body is cut into reads, and that what is read is the body.
func FuzzBodyReader(f *testing.F) {
	f.Add([]byte("a\r\n\r\n\r\nb"), 3)
	f.Add([]byte("\n\n \n\t\r\r\rx\n"), 4)
	f.Fuzz(func(t *testing.T, body []byte, limit int) {
		limit = 1 + abs(limit)%64
		// The reference: scan the whole body at once.
		run, trip := 0, -1
		for i, c := range body {
			switch c {
			case '\r', '\n':
				run++
			case ' ', '\t':
			default:
				run = 0
			}
			if run > limit {
				trip = i
				break
			}
		}
		for _, r := range []io.Reader{bytes.NewReader(body), iotest.OneByteReader(bytes.NewReader(body)), iotest.HalfReader(bytes.NewReader(body))} {
			b := &bodyReader{r: r, limit: limit}
			out, err := io.ReadAll(b)
			if err != nil {
				t.Fatal(err)
			}
			if (b.tripped != nil) != (trip >= 0) {
				t.Fatalf("tripped %v, reference trips at %d", b.tripped, trip)
			}
			want := body
			if trip >= 0 {
				want = body[:trip]
			}
			if !bytes.Equal(out, want) {
				t.Fatalf("read %q, want %q", out, want)
			}
		}
	})
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// lTag is an independent reading of "has an l= tag": a tag list element
// whose name, white space trimmed as go-msgauth trims it (unicode.IsSpace),
// is l.
var lTag = regexp.MustCompile(`(?:^|;)[\t\n\v\f\r \x{85}\x{A0}\p{Z}]*l[\t\n\v\f\r \x{85}\x{A0}\p{Z}]*=`)

// FuzzSignatureTags checks the reading of DKIM-Signature tags against an
// independent one for l=, and against go-msgauth for d=.
func FuzzSignatureTags(f *testing.F) {
	f.Add("v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=sel; l=100; h=from:to; bh=abc=; b=def=")
	f.Add("v=1; d = example.org ; l\t=\r\n 5; s=x")
	f.Add("v=1;\u00a0l=1;d=ex\u2003ample.org")
	f.Add("v=1; l; d=a; d=b; s=s")
	f.Add("l=")
	f.Fuzz(func(t *testing.T, value string) {
		sig := parseSignature(value)
		if want := lTag.MatchString(value); sig.hasL != want {
			t.Fatalf("hasL %v, want %v", sig.hasL, want)
		}
		// go-msgauth's reading of d= (when it reads the tags at all). Line
		// ends would cut the value into fields: FuzzHeader's business.
		if strings.ContainsAny(value, "\r\n") {
			return
		}
		verifs, err := msgauth.VerifyWithOptions(bytes.NewReader([]byte("DKIM-Signature: "+value+"\r\n\r\n")), &msgauth.VerifyOptions{
			LookupTXT: func(string) ([]string, error) { return nil, errors.New("no key") },
		})
		if err != nil || len(verifs) != 1 {
			t.Fatalf("go-msgauth: %d verifications, %v", len(verifs), err)
		}
		if d := verifs[0].Domain; d != "" && d != sig.domain {
			t.Fatalf("d=%q, go-msgauth reads %q", sig.domain, d)
		}
	})
}

// FuzzHeader checks that the verifier finds the DKIM-Signature fields of a
// header as go-msgauth does: the same number, in the same order.
func FuzzHeader(f *testing.F) {
	f.Add([]byte("From: a@example.org\r\nDKIM-Signature: v=1; d=example.org; s=s\r\n\r\nbody"))
	f.Add([]byte("DKIM-Signature: v=1;\r\n d=a.example; s=s\r\ndkim-signature : v=1; d=b.example\r\n\tl=3\r\n\r\n"))
	f.Add([]byte(" DKIM-Signature: v=1; d=x\nDKIM-Signature:v=1;d=y\r\r\n\n"))
	f.Add([]byte("Subject: x\r\n\r\nDKIM-Signature: v=1; d=body"))
	f.Fuzz(func(t *testing.T, data []byte) {
		hdr, err := readHeader(bufio.NewReader(bytes.NewReader(data)), maxHeaderBytes)
		if err != nil {
			t.Fatal(err)
		}
		sigs := signatures(hdr)
		verifs, err := msgauth.VerifyWithOptions(bytes.NewReader(hdr), &msgauth.VerifyOptions{
			LookupTXT: func(string) ([]string, error) { return nil, errors.New("no key") },
		})
		if err != nil {
			t.Fatalf("go-msgauth: %v", err)
		}
		if len(verifs) != len(sigs) {
			t.Fatalf("%d signatures, go-msgauth finds %d", len(sigs), len(verifs))
		}
		for i, v := range verifs {
			if v.Domain != "" && v.Domain != sigs[i].domain {
				t.Fatalf("signature %d: d=%q, go-msgauth reads %q", i, sigs[i].domain, v.Domain)
			}
		}
	})
}
