// Package filtertest makes test messages: PGP/MIME messages encrypted by
// go-crypto, GnuPG and Sequoia, and the near misses the filter must refuse.
package filtertest

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// GoCryptoV4 encrypts plaintext to a new v4 key: PKESK v3 and SEIPD v1.
func GoCryptoV4(t testing.TB, plaintext []byte) string {
	t.Helper()
	config := &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA}
	return goCryptoEncrypt(t, plaintext, config)
}

// GoCryptoV6 encrypts plaintext to a new v6 key: PKESK v6 and SEIPD v2,
// as Delta Chat writes them.
func GoCryptoV6(t testing.TB, plaintext []byte) string {
	t.Helper()
	config := &packet.Config{
		V6Keys:     true,
		Algorithm:  packet.PubKeyAlgoEd25519,
		AEADConfig: &packet.AEADConfig{},
	}
	return goCryptoEncrypt(t, plaintext, config)
}

func goCryptoEncrypt(t testing.TB, plaintext []byte, config *packet.Config) string {
	t.Helper()
	key, err := openpgp.NewEntity("", "", "bob@example.org", config)
	if err != nil {
		t.Fatalf("generating key: %v", err)
	}
	return armored(t, func(w io.Writer) (io.WriteCloser, error) {
		return openpgp.Encrypt(w, []*openpgp.Entity{key}, nil, nil, config)
	}, plaintext)
}

// GoCryptoSymmetricV6 encrypts plaintext with a passphrase: SKESK v6 and
// SEIPD v2, as in the first Secure-Join step of Delta Chat.
func GoCryptoSymmetricV6(t testing.TB, plaintext []byte) string {
	t.Helper()
	config := &packet.Config{AEADConfig: &packet.AEADConfig{}}
	return armored(t, func(w io.Writer) (io.WriteCloser, error) {
		return openpgp.SymmetricallyEncrypt(w, []byte("secret from the QR code"), nil, config)
	}, plaintext)
}

func armored(t testing.TB, encrypt func(io.Writer) (io.WriteCloser, error), plaintext []byte) string {
	t.Helper()
	var buf bytes.Buffer
	aw, err := armor.Encode(&buf, "PGP MESSAGE", nil)
	if err != nil {
		t.Fatal(err)
	}
	w, err := encrypt(aw)
	if err != nil {
		t.Fatalf("encrypting: %v", err)
	}
	if _, err := w.Write(plaintext); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := aw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// Armor wraps binary OpenPGP data in ASCII armor, as a PGP MESSAGE.
func Armor(t testing.TB, data []byte) string {
	t.Helper()
	return armored(t, func(w io.Writer) (io.WriteCloser, error) { return nopCloser{w}, nil }, data)
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// Encrypted returns a PGP/MIME message (RFC 3156) from one address to
// another whose payload is the given armored text.
func Encrypted(from, to, armoredText string) []byte {
	return EncryptedParts(from, to, "Version: 1", "application/octet-stream", armoredText)
}

// EncryptedParts is Encrypted with the control part's text and the payload
// part's type chosen by the caller, for near misses.
func EncryptedParts(from, to, control, payloadType, payload string) []byte {
	return Message(
		fmt.Sprintf("From: <%s>\nTo: <%s>\nSubject: [...]\nMIME-Version: 1.0\n"+
			"Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"b1\"", from, to),
		"--b1\nContent-Type: application/pgp-encrypted\nContent-Description: PGP/MIME version identification\n\n"+
			control+"\n\n"+
			"--b1\nContent-Type: "+payloadType+"; name=\"encrypted.asc\"\n"+
			"Content-Disposition: inline; filename=\"encrypted.asc\"\n\n"+
			strings.TrimRight(payload, "\n")+"\n\n--b1--\n")
}

// Plain returns an unencrypted text message.
func Plain(from, to, subject, body string) []byte {
	return Message(
		fmt.Sprintf("From: <%s>\nTo: <%s>\nSubject: %s\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8", from, to, subject),
		body)
}

// Message joins a header and a body and turns every line ending into CRLF.
func Message(header, body string) []byte {
	s := strings.ReplaceAll(header+"\n\n"+body, "\r\n", "\n")
	if !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	return []byte(strings.ReplaceAll(s, "\n", "\r\n"))
}

// EncryptedOfSize returns an encrypted message from from to to (GoCryptoV6)
// of about size bytes, within half a percent, with a random payload: for
// loads and benchmarks.
func EncryptedOfSize(t testing.TB, from, to string, size int) []byte {
	t.Helper()
	build := func(payload int) []byte {
		p := make([]byte, max(payload, 0))
		rand.Read(p)
		return Encrypted(from, to, GoCryptoV6(t, p))
	}
	// Armor makes 66 bytes of 48 (64 base64 characters and CRLF); the
	// packets add a little that grows with the payload too.
	empty := len(build(0))
	payload := (size - empty) * 48 / 66
	msg := build(payload)
	for range 2 {
		if diff := size - len(msg); diff > size/200 || -diff > size/200 {
			payload += diff * 48 / 66
			msg = build(payload)
		}
	}
	return msg
}
