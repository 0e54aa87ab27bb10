package filter_test

import (
	"bytes"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"filtermail/filter"
	"filtermail/filter/filtertest"
)

func TestFromAddress(t *testing.T) {
	for header, want := range map[string]string{
		"Alice <alice@chat.example.org>":             "alice@chat.example.org",
		"alice@chat.example.org":                     "alice@chat.example.org",
		"=?utf-8?q?Al=C3=AFce?= <alice@example.org>": "alice@example.org",
		"broken \"quote <alice@example.org>":         "alice@example.org",
		"a@example.org, b@example.org":               "",
		"":                                           "",
	} {
		msg := filtertest.Message("From: "+header, "hi")
		if got := filter.ReadMessage(bytes.NewReader(msg)).From; got != want {
			t.Errorf("From: %s gave %q, want %q", header, got, want)
		}
	}
}

// Messages whose structure go-message refuses are not encrypted, and
// reading them does not fail.
func TestReadMessageMalformed(t *testing.T) {
	for name, msg := range map[string][]byte{
		"empty":              nil,
		"no header end":      []byte("From: <a@b>"),
		"bad header line":    []byte("From <a@b>\r\n\r\nhi"),
		"unclosed multipart": filtertest.Message("From: <a@b>\nContent-Type: multipart/encrypted; boundary=x", "--x\nContent-Type: application/pgp-encrypted\n\nVersion: 1\n"),
		"bad base64 payload": filtertest.Encrypted("a@b", "c@d", "-----BEGIN PGP MESSAGE-----\n\n!!!!\n-----END PGP MESSAGE-----\n"),
	} {
		if m := filter.ReadMessage(bytes.NewReader(msg)); m.Encrypted {
			t.Errorf("%s: passed as encrypted", name)
		}
	}
}

func FuzzReadMessage(f *testing.F) {
	f.Add(filtertest.Encrypted("a@b", "c@d", filtertest.GoCryptoV6(f, []byte("x"))))
	f.Add(filtertest.Encrypted("a@b", "c@d", filtertest.GoCryptoV4(f, []byte("x"))))
	f.Add(filtertest.Plain("a@b", "c@d", "hi", "hello"))
	f.Add(secureJoin("vc-request", "Secure-Join: vc-request", false))
	f.Fuzz(func(t *testing.T, msg []byte) {
		m := filter.ReadMessage(bytes.NewReader(msg))
		if m.Encrypted && m.Packets.SEIPDVersion != 1 && m.Packets.SEIPDVersion != 2 {
			t.Fatalf("encrypted with SEIPD version %d", m.Packets.SEIPDVersion)
		}
		if m.Encrypted && m.SecureJoin {
			t.Fatal("both encrypted and a Secure-Join request")
		}
	})
}

// A part's header is bounded as the message's is: a 25 MB header line in
// the payload part is refused without being held.
func TestPartHeaderBounded(t *testing.T) {
	huge := "X-Long: " + strings.Repeat("x", 25<<20)
	for name, msg := range map[string][]byte{
		"payload": filtertest.EncryptedParts(alice, bob, "Version: 1", "application/octet-stream\n"+huge, filtertest.GoCryptoV6(t, []byte("hi"))),
		"control": filtertest.EncryptedParts(alice, bob, "Version: 1\r\n", "application/octet-stream", filtertest.GoCryptoV6(t, []byte("hi"))),
	} {
		if name == "control" {
			msg = bytes.Replace(msg, []byte("Content-Type: application/pgp-encrypted"), []byte("Content-Type: application/pgp-encrypted\r\n"+huge), 1)
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		m := filter.ReadMessage(bytes.NewReader(msg))
		runtime.ReadMemStats(&after)
		if m.Encrypted || !strings.Contains(fmt.Sprint(m.NotEncrypted), "part header larger") {
			t.Errorf("%s: encrypted %v, %v; want a part header too large", name, m.Encrypted, m.NotEncrypted)
		}
		if got := after.TotalAlloc - before.TotalAlloc; got > 4<<20 {
			t.Errorf("%s: reading it allocated %d bytes", name, got)
		}
	}
}

// HeaderFrom, which reads only the From fields of a header, finds the
// address ReadMessage finds in the whole message, whenever it finds one.
func FuzzHeaderFrom(f *testing.F) {
	f.Add([]byte("From: Alice <alice@example.org>\r\nTo: b@example.org\r\n\r\n"))
	f.Add([]byte("To: b\r\nfrom :\r\n <alice@example.org>\r\nFrom: x@y\r\n\r\n"))
	f.Add([]byte("X: y\r\n From: a@b\r\nFROM: c@d\r\n\r\n"))
	f.Fuzz(func(t *testing.T, header []byte) {
		end := bytes.Index(header, []byte("\r\n\r\n"))
		if end < 0 {
			return
		}
		header = header[:end+4]
		want := filter.ReadMessage(bytes.NewReader(append(header, "body\r\n"...))).From
		if got := filter.HeaderFrom(header); want != "" && got != want {
			t.Errorf("%q: HeaderFrom %q, ReadMessage %q", header, got, want)
		}
	})
}
