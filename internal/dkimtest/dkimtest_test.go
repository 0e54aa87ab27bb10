package dkimtest_test

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"filtermail/internal/dkimtest"
)

var msg = []byte("From: a@example.org\r\nTo: b@example.net\r\nSubject: hi\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <x@example.org>\r\n\r\nhello\r\n")

// field returns the DKIM-Signature field of a signed message, unfolded.
func field(t *testing.T, signed []byte) string {
	t.Helper()
	if !bytes.HasPrefix(signed, []byte("DKIM-Signature:")) || !bytes.HasSuffix(signed, msg) {
		t.Fatalf("signed message %q", signed)
	}
	f := string(signed[:len(signed)-len(msg)])
	if strings.Count(f, "\n") != strings.Count(f, "\r\n") {
		t.Errorf("field has bare LF: %q", f)
	}
	return strings.NewReplacer("\r\n", "", "\t", "", " ", "").Replace(f)
}

func TestKeys(t *testing.T) {
	rsa := dkimtest.NewKey(t, dkimtest.RSA, "example.org", "rsa")
	if !strings.HasPrefix(rsa.TXT(), "v=DKIM1;") || !strings.Contains(rsa.TXT(), "k=rsa;") || len(rsa.TXT()) < 380 {
		t.Errorf("RSA record %q", rsa.TXT())
	}
	ed := dkimtest.NewKey(t, dkimtest.Ed25519, "example.org", "ed")
	if !regexp.MustCompile(`^v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}=$`).MatchString(ed.TXT()) {
		t.Errorf("Ed25519 record %q", ed.TXT())
	}
	if ed.Name() != "ed._domainkey.example.org" {
		t.Errorf("name %q", ed.Name())
	}
}

func TestSigners(t *testing.T) {
	for _, alg := range dkimtest.Algorithms {
		key := dkimtest.NewKey(t, alg, "example.net", "sel")
		for _, canon := range dkimtest.Canonicalizations {
			for name, sign := range map[string]func(testing.TB, *dkimtest.Key, []byte, string) []byte{
				"opendkim": dkimtest.SignOpenDKIM,
				"dkimpy":   dkimtest.SignDkimpy,
			} {
				f := field(t, sign(t, key, msg, canon))
				for _, want := range []string{"a=" + alg.String() + ";", "c=" + canon + ";", "d=example.net;", "s=sel;"} {
					if !strings.Contains(f, want) {
						t.Errorf("%s %v %s: %q lacks %q", name, alg, canon, f, want)
					}
				}
			}
		}
	}
}

func TestOptions(t *testing.T) {
	key := dkimtest.NewKey(t, dkimtest.RSA, "example.org", "sel")
	f := field(t, dkimtest.SignOpenDKIMWith(t, key, msg, dkimtest.Options{Canon: "relaxed/relaxed", BodyLength: true, TTL: time.Hour, Backdate: 48 * time.Hour}))
	if !strings.Contains(f, ";l=7;") {
		t.Errorf("no l=7: %q", f)
	}
	ts := regexp.MustCompile(`;t=(\d+);x=(\d+);`).FindStringSubmatch(f)
	if ts == nil {
		t.Fatalf("no t= and x=: %q", f)
	}
	signed, _ := strconv.ParseInt(ts[1], 10, 64)
	expires, _ := strconv.ParseInt(ts[2], 10, 64)
	if expires-signed != 3600 || expires >= time.Now().Unix() {
		t.Errorf("t=%d x=%d: want x= an hour after t=, before now", signed, expires)
	}
	f = field(t, dkimtest.SignDkimpyWith(t, key, msg, dkimtest.Options{Canon: "simple/simple", BodyLength: true}))
	if !strings.Contains(f, ";l=7;") {
		t.Errorf("no l=7: %q", f)
	}
}
