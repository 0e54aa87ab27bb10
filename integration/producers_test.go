package integration

import (
	"bytes"
	"crypto/rand"
	"slices"
	"strings"
	"testing"

	"filtermail/filter/filtertest"
	"filtermail/smtpd/smtpdtest"
)

// Messages made by OpenPGP implementations no one here wrote pass
// filtermail in both directions, through Postfix; what is only signed is
// refused.
func TestOpenPGPProducersThroughPostfix(t *testing.T) {
	r := startRelay(t)
	markStrict(t, r)
	strict := "strict@" + domain
	gpg := filtertest.NewGnuPG(t)
	large := make([]byte, 1536<<10) // over a megabyte: GnuPG writes partial lengths
	rand.Read(large)

	tests := []struct {
		name    string
		armored string
		pass    bool
	}{
		{"gpg public-key", gpg.Encrypt([]byte("hello from gpg")), true},
		{"gpg public-key, 1.5 MiB", gpg.Encrypt(large), true},
		{"gpg symmetric", gpg.EncryptSymmetric([]byte("hello from gpg, with a passphrase")), true},
		{"gpg symmetric, 1.5 MiB", gpg.EncryptSymmetric(large), true},
		{"sq", filtertest.Sequoia(t, []byte("hello from sq")), true},
		{"go-crypto v6", filtertest.GoCryptoV6(t, []byte("hello from go-crypto")), true},
		{"gpg signed only", gpg.Sign([]byte("only signed")), false},
		{"gpg cleartext-signed", gpg.ClearSign([]byte("clear signed")), false},
	}
	out := smtpdtest.Dial(t, r.submission)
	in := smtpdtest.Dial(t, r.mx)
	passed := 0
	for _, tt := range tests {
		outgoing := filtertest.Encrypted(alice, carol, tt.armored)
		incoming := r.sign("example.net", filtertest.Encrypted(bob, strict, tt.armored))
		want := "523"
		if tt.pass {
			want = "250"
			passed++
		}
		out.Want("MAIL FROM:<"+alice+">", "250")
		out.Want("RCPT TO:<"+carol+">", "250")
		if got := out.WantData(outgoing, want); !strings.HasPrefix(got, want) {
			t.Errorf("%s, outgoing: %q", tt.name, got)
		}
		in.Want("MAIL FROM:<"+bob+">", "250")
		in.Want("RCPT TO:<"+strict+">", "250")
		if got := in.WantData(incoming, want); !strings.HasPrefix(got, want) {
			t.Errorf("%s, incoming: %q", tt.name, got)
		}
	}
	// Maildir names do not sort by arrival: look for each payload.
	delivered := map[string][][]byte{"carol": r.waitMailbox("carol", passed), "strict": r.waitMailbox("strict", passed)}
	for _, tt := range tests {
		if !tt.pass {
			continue
		}
		for who, msgs := range delivered {
			if !slices.ContainsFunc(msgs, func(got []byte) bool { return samePayload(got, filtertest.Encrypted(alice, carol, tt.armored)) }) {
				t.Errorf("%s: %s did not get it unchanged", tt.name, who)
			}
		}
	}
	if len(r.Mailbox("carol")) != passed || len(r.Mailbox("strict")) != passed {
		t.Error("a refused message was delivered")
	}
	if !bytes.Contains([]byte(tests[1].armored), []byte("-----BEGIN PGP MESSAGE-----")) {
		t.Error("the large message is not armored")
	}
}
