package filter_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strings"
	"sync"
	"testing"

	"filtermail/filter"
	"filtermail/filter/filtertest"
)

const (
	alice = "alice@chat.example.org" // a local user
	bob   = "bob@example.net"        // somewhere else
)

// fixtures are armored messages from each producer, made once per run.
type fixtures struct {
	goV4, goV6, goSymV6                   string
	gpg, gpgLarge, gpgSym, gpgSign, gpgCS string
	sq                                    string
}

var (
	fixOnce sync.Once
	fix     fixtures
)

func getFixtures(t *testing.T) fixtures {
	t.Helper()
	fixOnce.Do(func() {
		text := []byte("Hello, this is a test message.\n")
		large := make([]byte, 2<<20) // random, so that compression keeps it large
		rand.Read(large)
		g := filtertest.NewGnuPG(t)
		fix = fixtures{
			goV4:     filtertest.GoCryptoV4(t, text),
			goV6:     filtertest.GoCryptoV6(t, text),
			goSymV6:  filtertest.GoCryptoSymmetricV6(t, text),
			gpg:      g.Encrypt(text),
			gpgLarge: g.Encrypt(large),
			gpgSym:   g.EncryptSymmetric(text),
			gpgSign:  g.Sign(text),
			gpgCS:    g.ClearSign(text),
			sq:       filtertest.Sequoia(t, text),
		}
	})
	if fix.goV4 == "" {
		t.Fatal("fixtures could not be made")
	}
	return fix
}

func encrypted(armored string) []byte { return filtertest.Encrypted(alice, bob, armored) }

// withArmorHeader adds an armor header line after the BEGIN line.
func withArmorHeader(armored string) string {
	begin, rest, _ := strings.Cut(armored, "\n")
	return begin + "\nComment: made by hand\n" + strings.TrimLeft(rest, "\r\n")
}

// armoredPackets armors hand-made packets.
func armoredPackets(t *testing.T, packets ...[]byte) string {
	return filtertest.Armor(t, cat(packets...))
}

func secureJoin(header, body string, extraPart bool) []byte {
	parts := "--sj\nContent-Type: text/plain; charset=utf-8\n\n" + body + "\n"
	if extraPart {
		parts += "--sj\nContent-Type: text/plain\n\nand more\n"
	}
	return filtertest.Message(
		"From: <"+alice+">\nTo: <"+bob+">\nSubject: [...]\nSecure-Join: "+header+
			"\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"sj\"",
		parts+"--sj--\n")
}

func TestOutgoing(t *testing.T) {
	f := getFixtures(t)
	policy := &filter.Policy{
		PassthroughSenders:    []string{"bot@chat.example.org"},
		PassthroughRecipients: []string{"echo@chat.example.org", "@notify.example.com"},
	}
	autocrypt := filtertest.Message(
		"From: <"+alice+">\nTo: <"+alice+">\nSubject: Autocrypt Setup Message\nAutocrypt-Setup-Message: v1\n"+
			"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"as\"",
		"--as\nContent-Type: text/plain\n\nThis is the Autocrypt setup message.\n--as--\n")
	plain := filtertest.Plain(alice, bob, "hi", "hello")

	tests := []struct {
		name string
		to   []string
		msg  []byte
		want filter.Verdict
	}{
		{"go-crypto v4 key, SEIPD v1", nil, encrypted(f.goV4), passed(filter.Encrypted)},
		{"go-crypto v6 key, SEIPD v2", nil, encrypted(f.goV6), passed(filter.Encrypted)},
		{"go-crypto SKESK v6, SEIPD v2", nil, encrypted(f.goSymV6), passed(filter.Encrypted)},
		{"GnuPG", nil, encrypted(f.gpg), passed(filter.Encrypted)},
		{"GnuPG, 2 MiB, partial lengths", nil, encrypted(f.gpgLarge), passed(filter.Encrypted)},
		{"GnuPG symmetric", nil, encrypted(f.gpgSym), passed(filter.Encrypted)},
		{"Sequoia", nil, encrypted(f.sq), passed(filter.Encrypted)},
		{"encrypted to a passthrough recipient", []string{"echo@chat.example.org"}, encrypted(f.goV6), passed(filter.Encrypted)},
		{"From in other case", nil, filtertest.Encrypted("Alice@Chat.Example.org", bob, f.goV6), passed(filter.Encrypted)},
		{"Secure-Join vc-request", nil, secureJoin("vc-request", "Secure-Join: vc-request", false), passed(filter.SecureJoin)},
		{"Secure-Join vg-request, case and space", nil, secureJoin("vg-request", "  secure-join: VG-request  \n", false), passed(filter.SecureJoin)},
		{"Autocrypt Setup Message to self", []string{alice}, autocrypt, passed(filter.AutocryptSetup)},
		{"passthrough recipient", []string{"echo@chat.example.org"}, plain, passed(filter.PassthroughRecipients)},
		{"passthrough domain", []string{"x@notify.example.com", "Echo@chat.example.org"}, plain, passed(filter.PassthroughRecipients)},

		{"cleartext", nil, plain, refused(filter.Unencrypted)},
		{"cleartext to a passthrough and another", []string{"echo@chat.example.org", bob}, plain, refused(filter.Unencrypted)},
		{"passthrough domain is exact", []string{"x@sub.notify.example.com"}, plain, refused(filter.Unencrypted)},
		{"Autocrypt Setup Message to another", []string{bob}, autocrypt, refused(filter.Unencrypted)},
		{"Autocrypt Setup Message to self and another", []string{alice, bob}, autocrypt, refused(filter.Unencrypted)},
		{"encrypted, From is someone else", nil, filtertest.Encrypted("mallory@chat.example.org", bob, f.goV6), refused(filter.ForgedFrom)},
		{"cleartext, From is someone else", nil, filtertest.Plain("mallory@chat.example.org", bob, "hi", "hello"), refused(filter.ForgedFrom)},
		{"no From header", nil, filtertest.Message("To: <"+bob+">", "hi"), refused(filter.ForgedFrom)},

		{"GnuPG signed only", nil, encrypted(f.gpgSign), refused(filter.Unencrypted)},
		{"GnuPG cleartext signature", nil, encrypted(f.gpgCS), refused(filter.Unencrypted)},
		{"literal data packet", nil, encrypted(armoredPackets(t, literal)), refused(filter.Unencrypted)},
		{"compressed packet", nil, encrypted(armoredPackets(t, compressed)), refused(filter.Unencrypted)},
		{"packet after SEIPD", nil, encrypted(armoredPackets(t, pkeskNew, seipd1, marker)), refused(filter.Unencrypted)},
		{"truncated header", nil, encrypted(armoredPackets(t, pkeskNew, []byte{0xd2, 0xff, 0})), refused(filter.Unencrypted)},
		{"SEIPD v3", nil, encrypted(armoredPackets(t, pkeskNew, []byte{0xd2, 2, 3, 0})), refused(filter.Unencrypted)},
		{"hand-made SEIPD v2 passes", nil, encrypted(armoredPackets(t, pkeskNew, seipd2)), passed(filter.Encrypted)},
		{"payload part text/plain", nil, filtertest.EncryptedParts(alice, bob, "Version: 1", "text/plain", f.goV6), refused(filter.Unencrypted)},
		{"Version: 2", nil, filtertest.EncryptedParts(alice, bob, "Version: 2", "application/octet-stream", f.goV6), refused(filter.Unencrypted)},
		{"armor header outgoing", nil, encrypted(withArmorHeader(f.goV6)), refused(filter.Unencrypted)},
		{"text after the armor", nil, encrypted(f.goV6 + "\nPS: hello\n"), refused(filter.Unencrypted)},
		{"payload not armored", nil, encrypted("hello"), refused(filter.Unencrypted)},
		{"Secure-Join with other text", nil, secureJoin("vc-request", "Secure-Join: vc-request, and hello", false), refused(filter.Unencrypted)},
		{"Secure-Join with a second part", nil, secureJoin("vc-request", "Secure-Join: vc-request", true), refused(filter.Unencrypted)},
		{"Secure-Join other step", nil, secureJoin("vc-auth-required", "Secure-Join: vc-auth-required", false), refused(filter.Unencrypted)},
		{"Secure-Join body without header", nil, secureJoin("", "Secure-Join: vc-request", false), refused(filter.Unencrypted)},
		{"Secure-Join not multipart", nil, filtertest.Message(
			"From: <"+alice+">\nSecure-Join: vc-request\nContent-Type: text/plain", "Secure-Join: vc-request"), refused(filter.Unencrypted)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			to := tt.to
			if to == nil {
				to = []string{bob}
			}
			m := filter.ReadMessage(bytes.NewReader(tt.msg))
			got := policy.Outgoing(filter.Envelope{From: alice, To: to}, m)
			wantVerdict(t, got, tt.want)
		})
	}
}

func TestPassthroughSender(t *testing.T) {
	policy := &filter.Policy{PassthroughSenders: []string{"bot@chat.example.org"}}
	for sender, want := range map[string]filter.Verdict{
		"bot@chat.example.org": passed(filter.PassthroughSender),
		"Bot@chat.example.org": passed(filter.PassthroughSender),
		alice:                  refused(filter.Unencrypted),
	} {
		m := filter.ReadMessage(bytes.NewReader(filtertest.Plain(sender, bob, "hi", "hello")))
		wantVerdict(t, policy.Outgoing(filter.Envelope{From: sender, To: []string{bob}}, m), want)
	}
}

// The control part must be application/pgp-encrypted.
func TestControlPartType(t *testing.T) {
	f := getFixtures(t)
	msg := bytes.Replace(encrypted(f.goV6), []byte("Content-Type: application/pgp-encrypted"), []byte("Content-Type: text/plain"), 1)
	if m := filter.ReadMessage(bytes.NewReader(msg)); m.Encrypted {
		t.Fatal("a text/plain control part passed as encrypted")
	}
}

func TestProducerFeatures(t *testing.T) {
	f := getFixtures(t)
	tests := []struct {
		name     string
		armored  string
		version  int
		legacy   bool
		partial  bool
		minESKs  int
		checkAll bool
	}{
		{"go-crypto v4", f.goV4, 1, false, false, 1, true},
		{"go-crypto v6", f.goV6, 2, false, false, 1, true},
		{"go-crypto symmetric v6", f.goSymV6, 2, false, false, 1, true},
		{"GnuPG", f.gpg, 1, true, false, 1, false},
		{"GnuPG large", f.gpgLarge, 1, true, true, 1, true},
		{"Sequoia", f.sq, 1, false, false, 1, false},
	}
	for _, tt := range tests {
		m := filter.ReadMessage(bytes.NewReader(encrypted(tt.armored)))
		p := m.Packets
		if !m.Encrypted || p.SEIPDVersion != tt.version || p.ESKs < tt.minESKs {
			t.Errorf("%s: %+v, not encrypted because %v; want SEIPD v%d", tt.name, p, m.NotEncrypted, tt.version)
		}
		if tt.checkAll && (p.Legacy != tt.legacy || p.Partial != tt.partial) {
			t.Errorf("%s: legacy %v partial %v, want %v %v", tt.name, p.Legacy, p.Partial, tt.legacy, tt.partial)
		}
		if tt.legacy && !p.Legacy {
			t.Errorf("%s: no legacy header seen", tt.name)
		}
	}
}

// markers is a MarkerLookup for tests.
type markers struct {
	marked   map[string]bool
	disabled map[string]bool
	err      error
}

func (m markers) Marked(addr string) (bool, error)   { return m.marked[addr], m.err }
func (m markers) Disabled(addr string) (bool, error) { return m.disabled[addr], m.err }

func TestIncoming(t *testing.T) {
	f := getFixtures(t)
	policy := &filter.Policy{Markers: markers{marked: map[string]bool{"strict@chat.example.org": true}}}
	report := func(from, autoSubmitted, typ string) []byte {
		h := "From: <" + from + ">\nTo: <strict@chat.example.org>\nSubject: failure\nMIME-Version: 1.0\n" +
			"Content-Type: " + typ + "; report-type=delivery-status; boundary=\"r\""
		if autoSubmitted != "" {
			h += "\nAuto-Submitted: " + autoSubmitted
		}
		return filtertest.Message(h, "--r\nContent-Type: text/plain\n\nIt failed.\n--r--\n")
	}
	strict := []string{"strict@chat.example.org"}
	relaxed := []string{"easy@chat.example.org"}
	tests := []struct {
		name string
		to   []string
		msg  []byte
		want filter.Verdict
	}{
		{"encrypted to a strict user", strict, encrypted(f.gpg), passed(filter.Encrypted)},
		{"armor header incoming", strict, encrypted(withArmorHeader(f.goV6)), passed(filter.Encrypted)},
		{"Secure-Join to a strict user", strict, secureJoin("vg-request", "Secure-Join: vg-request", false), passed(filter.SecureJoin)},
		{"delivery report", strict, report("MAILER-DAEMON@example.net", "auto-replied", "multipart/report"), passed(filter.MailerDaemon)},
		{"cleartext to a relaxed user", relaxed, filtertest.Plain(bob, alice, "hi", "hello"), passed(filter.CleartextAllowed)},

		{"cleartext to a strict user", strict, filtertest.Plain(bob, alice, "hi", "hello"), refused(filter.Unencrypted)},
		{"cleartext to relaxed and strict", append(relaxed, strict...), filtertest.Plain(bob, alice, "hi", "hello"), refused(filter.Unencrypted)},
		{"report without Auto-Submitted", strict, report("mailer-daemon@example.net", "", "multipart/report"), refused(filter.Unencrypted)},
		{"report from someone else", strict, report("postmaster@example.net", "auto-replied", "multipart/report"), refused(filter.Unencrypted)},
		{"report not multipart/report", strict, report("mailer-daemon@example.net", "auto-replied", "multipart/mixed"), refused(filter.Unencrypted)},
		{"signed only", strict, encrypted(f.gpgSign), refused(filter.Unencrypted)},
		{"no From header", relaxed, filtertest.Message("To: <easy@chat.example.org>\nSubject: x", "hi"), refused(filter.InvalidFrom)},
		{"two From addresses", relaxed, filtertest.Plain(bob+">, <"+alice, alice, "hi", "hello"), refused(filter.InvalidFrom)},
		{"From without an address", relaxed, filtertest.Message("From: Bob\nTo: <easy@chat.example.org>", "hi"), refused(filter.InvalidFrom)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := filter.ReadMessage(bytes.NewReader(tt.msg))
			got, err := policy.Incoming(filter.Envelope{From: bob, To: tt.to}, m)
			if err != nil {
				t.Fatal(err)
			}
			wantVerdict(t, got, tt.want)
		})
	}

	broken := &filter.Policy{Markers: markers{err: errors.New("disk on fire")}}
	m := filter.ReadMessage(bytes.NewReader(filtertest.Plain(bob, alice, "hi", "hello")))
	if _, err := broken.Incoming(filter.Envelope{From: bob, To: relaxed}, m); err == nil {
		t.Error("a failed marker lookup gave a verdict")
	}
}

// Incoming mail whose envelope sender is not its From address passes
// with the envelope sender <>, whatever decided it.
func TestIncomingNullSender(t *testing.T) {
	f := getFixtures(t)
	policy := &filter.Policy{Markers: markers{}}
	to := []string{"easy@chat.example.org"}
	for _, tt := range []struct {
		sender string
		msg    []byte
		null   bool
	}{
		{alice, encrypted(f.gpg), false},
		{strings.ToUpper(alice), encrypted(f.gpg), false},
		{"", encrypted(f.gpg), true},
		{"srs0=x=y@forwarder.example.net", encrypted(f.gpg), true},
		{"other@example.com", filtertest.Plain(bob, alice, "hi", "hello"), true},
		{bob, filtertest.Plain(bob, alice, "hi", "hello"), false},
	} {
		v, err := policy.Incoming(filter.Envelope{From: tt.sender, To: to}, filter.ReadMessage(bytes.NewReader(tt.msg)))
		if err != nil || !v.Pass || v.NullSender != tt.null {
			t.Errorf("sender %q: pass %v, null sender %v, error %v; want null sender %v", tt.sender, v.Pass, v.NullSender, err, tt.null)
		}
	}
}

// Disabled accounts are dropped from the recipients, the others kept in
// their order.
func TestActiveRecipients(t *testing.T) {
	policy := &filter.Policy{Markers: markers{disabled: map[string]bool{"gone@chat.example.org": true}}}
	got, err := policy.ActiveRecipients([]string{"a@chat.example.org", "gone@chat.example.org", "b@chat.example.org"})
	if err != nil || strings.Join(got, " ") != "a@chat.example.org b@chat.example.org" {
		t.Errorf("got %q, %v", got, err)
	}
	if got, err := policy.ActiveRecipients([]string{"gone@chat.example.org"}); err != nil || len(got) != 0 {
		t.Errorf("only a disabled recipient: got %q, %v", got, err)
	}
	broken := &filter.Policy{Markers: markers{err: errors.New("disk on fire")}}
	if _, err := broken.ActiveRecipients([]string{"a@chat.example.org"}); err == nil {
		t.Error("a failed lookup went unnoticed")
	}
}

// A sender that is not local@domain is refused as such, before the From
// header is compared with it.
func TestOutgoingBadSender(t *testing.T) {
	f := getFixtures(t)
	policy := &filter.Policy{PassthroughSenders: []string{""}, PassthroughRecipients: []string{"@example.net"}}
	for _, sender := range []string{"", "a@b@c", "alice"} {
		m := filter.ReadMessage(bytes.NewReader(filtertest.Encrypted(sender, bob, f.goV6)))
		wantVerdict(t, policy.Outgoing(filter.Envelope{From: sender, To: []string{bob}}, m), refused(filter.BadSender))
	}
}

// The verdict says which recipient and which part of the encryption rule
// decided, in the direction's own terms.
func TestVerdictExplains(t *testing.T) {
	f := getFixtures(t)
	policy := &filter.Policy{
		PassthroughRecipients: []string{"echo@chat.example.org"},
		Markers:               markers{marked: map[string]bool{"strict@chat.example.org": true}},
	}
	armorHeader := filter.ReadMessage(bytes.NewReader(encrypted(withArmorHeader(f.goV6))))
	to := []string{"echo@chat.example.org", bob, "carol@example.com"}

	v := policy.Outgoing(filter.Envelope{From: alice, To: to}, armorHeader)
	if v.Reason != filter.Unencrypted || v.NotEncrypted == nil ||
		v.NotEncrypted.Error() != `armor header "Comment": outgoing mail must have none` {
		t.Errorf("outgoing with an armor header: %s, not encrypted: %v", v.Reason, v.NotEncrypted)
	}
	if v.Recipient != bob {
		t.Errorf("outgoing: recipient %q decided, want the first that is not a passthrough recipient", v.Recipient)
	}
	if !armorHeader.Encrypted || armorHeader.Packets.SEIPDVersion != 2 {
		t.Errorf("the message itself should read as encrypted: %+v", armorHeader)
	}

	v, err := policy.Incoming(filter.Envelope{From: bob, To: []string{"easy@chat.example.org", "strict@chat.example.org"}}, armorHeader)
	if err != nil || v.Reason != filter.Encrypted || v.NotEncrypted != nil {
		t.Errorf("incoming with an armor header: %s, %v, not encrypted: %v", v.Reason, err, v.NotEncrypted)
	}
	plain := filter.ReadMessage(bytes.NewReader(filtertest.Plain(bob, alice, "hi", "hello")))
	v, err = policy.Incoming(filter.Envelope{From: bob, To: []string{"easy@chat.example.org", "strict@chat.example.org"}}, plain)
	if err != nil || v.Reason != filter.Unencrypted || v.Recipient != "strict@chat.example.org" {
		t.Errorf("incoming cleartext: %s, %v, recipient %q; want the marked one", v.Reason, err, v.Recipient)
	}
	if v.NotEncrypted == nil || v.NotEncrypted.Error() != "not multipart" {
		t.Errorf("incoming cleartext: not encrypted: %v", v.NotEncrypted)
	}
}

func TestValidSender(t *testing.T) {
	for addr, want := range map[string]bool{
		alice: true, "a@b": true,
		"": false, "alice": false, "@chat.example.org": false, "alice@": false, "a@b@c": false,
	} {
		if got := filter.ValidSender(addr); got != want {
			t.Errorf("ValidSender(%q) = %v, want %v", addr, got, want)
		}
	}
}

// wantVerdict fails unless got has want's Pass and Reason and says why,
// as each verdict must: a rule in words without an address, why the
// message is not encrypted for every verdict but Encrypted and those on
// the sender, and the recipient that decided a refusal as Unencrypted.
func wantVerdict(t *testing.T, got, want filter.Verdict) {
	t.Helper()
	if got.Pass != want.Pass || got.Reason != want.Reason {
		t.Errorf("got %v %s, want %v %s (%s; not encrypted: %v)", got.Pass, got.Reason, want.Pass, want.Reason, got.Rule, got.NotEncrypted)
	}
	if got.Rule == "" || strings.Contains(got.Rule, "example.") { // every address here is at example.*
		t.Errorf("%s: rule %q", got.Reason, got.Rule)
	}
	switch got.Reason {
	case filter.Encrypted, filter.BadSender, filter.ForgedFrom, filter.InvalidFrom:
		if got.NotEncrypted != nil {
			t.Errorf("%s: not encrypted: %v", got.Reason, got.NotEncrypted)
		}
	default:
		if got.NotEncrypted == nil {
			t.Errorf("%s without saying why the message is not encrypted", got.Reason)
		}
	}
	if (got.Reason == filter.Unencrypted) != (got.Recipient != "") {
		t.Errorf("%s: recipient %q", got.Reason, got.Recipient)
	}
}

func passed(r filter.Reason) filter.Verdict  { return filter.Verdict{Pass: true, Reason: r} }
func refused(r filter.Reason) filter.Verdict { return filter.Verdict{Reason: r} }
