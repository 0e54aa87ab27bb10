package filter

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"

	"github.com/emersion/go-message"
	gomail "github.com/emersion/go-message/mail"
)

// Message holds what the verdict rules need to know about one message. It
// is read once, in one pass over the message, whatever the number of
// recipients.
type Message struct {
	From          string // the single address in the From header, or ""
	Subject       string
	ContentType   string // top-level media type, lower case
	AutoSubmitted bool   // an Auto-Submitted header with a value

	// Encrypted is set for an RFC 3156 PGP/MIME message whose payload is
	// an encrypted OpenPGP message; Packets describes that payload, and
	// NotEncrypted says why a message is not one. Whether armor headers
	// are allowed depends on the direction: see Policy.
	Encrypted    bool
	ArmorHeader  string // the key of the payload's first armor header, or ""
	Packets      Packets
	NotEncrypted error

	SecureJoin bool // a Secure-Join vc-request or vg-request

	bound *partHeaderBound
}

// smallBody bounds what is read of the parts that must hold a short text.
const smallBody = 1024

// maxPartHeader bounds the header of a part, with the boundary line and,
// for the first part, the preamble before it: the MIME reader holds a
// header whole (the message's own header it bounds itself, at 1 MiB).
const maxPartHeader = 64 << 10

// partHeaderBound counts what the MIME reader reads of the message while
// it reads a part's header, and fails the read past maxPartHeader. What
// buffers above it read ahead counts too, a few KiB at most.
type partHeaderBound struct {
	r     io.Reader
	armed bool
	left  int64
}

var errPartHeaderTooLarge = fmt.Errorf("part header larger than %d bytes", maxPartHeader)

func (b *partHeaderBound) arm()    { b.armed, b.left = true, maxPartHeader }
func (b *partHeaderBound) disarm() { b.armed = false }

func (b *partHeaderBound) Read(p []byte) (int, error) {
	if !b.armed {
		return b.r.Read(p)
	}
	if b.left <= 0 {
		return 0, errPartHeaderTooLarge
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

// ReadMessage reads a message and describes it. It never fails: what
// cannot be parsed is simply not encrypted and has no From address.
func ReadMessage(r io.Reader) *Message {
	m := &Message{}
	m.bound = &partHeaderBound{r: r}
	e, err := message.ReadWithOptions(bufio.NewReader(m.bound), &message.ReadOptions{MaxHeaderBytes: MaxHeaderBytes})
	if e == nil {
		m.NotEncrypted = fmt.Errorf("unreadable header: %w", err)
		return m
	}
	h := gomail.Header{Header: e.Header}
	m.From = fromAddress(h)
	if s, err := h.Subject(); err == nil {
		m.Subject = strings.TrimSpace(s)
	} else {
		m.Subject = strings.TrimSpace(h.Get("Subject"))
	}
	m.AutoSubmitted = strings.TrimSpace(h.Get("Auto-Submitted")) != ""
	m.ContentType, _, _ = mime.ParseMediaType(h.Get("Content-Type"))

	secureJoinHeader := isSecureJoinRequest(h.Get("Secure-Join"))
	m.NotEncrypted = m.readParts(e, secureJoinHeader)
	m.Encrypted = m.NotEncrypted == nil
	return m
}

// MaxHeaderBytes bounds the message header the verdict reads: a longer
// one is unreadable, and the message is not encrypted and has no From
// address. Postfix keeps no more of a header either (header_size_limit,
// 100 KiB by default).
const MaxHeaderBytes = 256 << 10

// HeaderFrom returns the single address of the From field of a message
// header (its bytes up to and including the empty line that ends it), as
// ReadMessage finds it in the whole message; "" if there is none. Only
// the From fields are parsed: the rest of the header is skipped, not
// read into fields.
func HeaderFrom(header []byte) string {
	if len(header) > MaxHeaderBytes {
		return ""
	}
	var from []byte
	in := false // in a From field, its continuation lines included
	for rest := header; len(rest) > 0; {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line = rest[:i+1]
		}
		rest = rest[len(line):]
		switch {
		case len(bytes.TrimRight(line, "\r\n")) == 0:
			rest = nil // the end of the header
		case line[0] == ' ' || line[0] == '\t':
			if in {
				from = append(from, line...)
			}
		default:
			name, _, _ := bytes.Cut(line, []byte(":"))
			in = bytes.EqualFold(bytes.TrimRight(name, " \t"), []byte("From"))
			if in {
				from = append(from, line...)
			}
		}
	}
	if from == nil {
		return ""
	}
	e, _ := message.Read(bytes.NewReader(append(from, "\r\n"...)))
	if e == nil {
		return ""
	}
	return fromAddress(gomail.Header{Header: e.Header})
}

// readParts walks the top-level parts once, judging at the same time
// whether the message is an encrypted message and whether it is a
// Secure-Join request. It returns why the message is not encrypted, or nil.
func (m *Message) readParts(e *message.Entity, secureJoinHeader bool) error {
	mr := e.MultipartReader()
	if mr == nil {
		return errors.New("not multipart")
	}
	encrypted := m.ContentType == "multipart/encrypted"
	var notEncrypted error
	if !encrypted {
		notEncrypted = fmt.Errorf("top-level type %s is not multipart/encrypted", m.ContentType)
		if !secureJoinHeader {
			return notEncrypted
		}
	}
	var part *message.Entity
	for n := 1; ; n++ {
		if part != nil {
			// The rest of the part before, so that what the MIME
			// reader reads next is the part's header (and the
			// boundary line before it).
			io.Copy(io.Discard, part.Body)
		}
		m.bound.arm()
		var err error
		part, err = mr.NextPart()
		m.bound.disarm()
		if err == io.EOF {
			switch {
			case n == 1:
				return errors.New("no parts")
			case n == 2 && encrypted:
				return errors.New("no encrypted payload part")
			}
			return notEncrypted
		}
		if err != nil {
			m.SecureJoin = false
			return fmt.Errorf("part %d: %w", n, err)
		}
		typ, _, _ := mime.ParseMediaType(part.Header.Get("Content-Type"))
		if typ == "" {
			typ = "text/plain" // RFC 2045, 5.2
		}
		if strings.HasPrefix(typ, "multipart/") {
			m.SecureJoin = false
			return fmt.Errorf("part %d is %s", n, typ)
		}
		m.SecureJoin = secureJoinHeader && n == 1 && typ == "text/plain" &&
			isSecureJoinText(readSmall(part.Body))
		if !encrypted {
			if n >= 2 {
				return notEncrypted // a second part settles Secure-Join too
			}
			continue
		}
		switch n {
		case 1:
			if typ != "application/pgp-encrypted" {
				encrypted, notEncrypted = false, fmt.Errorf("part 1 is %s, not application/pgp-encrypted", typ)
			} else if v := strings.TrimSpace(readSmall(part.Body)); v != "Version: 1" {
				encrypted, notEncrypted = false, fmt.Errorf("part 1 says %.20q, not \"Version: 1\"", v)
			}
		case 2:
			if typ != "application/octet-stream" {
				encrypted, notEncrypted = false, fmt.Errorf("part 2 is %s, not application/octet-stream", typ)
			} else if err := m.readPayload(part.Body); err != nil {
				encrypted, notEncrypted = false, fmt.Errorf("part 2: %w", err)
			}
		default:
			encrypted, notEncrypted = false, fmt.Errorf("more than two parts")
		}
	}
}

// readPayload checks the armored OpenPGP message of the second part.
func (m *Message) readPayload(r io.Reader) error {
	armor := newArmorReader(r)
	p, err := CheckPackets(armor)
	m.Packets, m.ArmorHeader = p, armor.header
	return err
}

// readSmall returns the text of a body that should be short; a longer one
// comes back cut, which no comparison accepts.
func readSmall(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, smallBody+1))
	return string(b)
}

// isSecureJoinRequest reports whether a Secure-Join header value, ignoring
// case and surrounding space, names a request.
func isSecureJoinRequest(s string) bool {
	s = strings.ToLower(strings.TrimSpace(s))
	return s == "vc-request" || s == "vg-request"
}

// isSecureJoinText reports whether the text of a Secure-Join request's
// only part says what the request is, ignoring case and surrounding space.
func isSecureJoinText(s string) bool {
	s = strings.ToLower(strings.TrimSpace(s))
	return s == "secure-join: vc-request" || s == "secure-join: vg-request"
}

// fromAddress returns the single address of the From header. A header that
// RFC 5322 parsing refuses still yields the address between its last
// angle brackets, or the whole value when it has no space.
func fromAddress(h gomail.Header) string {
	if list, err := h.AddressList("From"); err == nil {
		if len(list) == 1 {
			return list[0].Address
		}
		return ""
	}
	v := strings.TrimSpace(h.Get("From"))
	if i := strings.LastIndexByte(v, '<'); i >= 0 {
		if j := strings.IndexByte(v[i:], '>'); j > 0 {
			return strings.TrimSpace(v[i+1 : i+j])
		}
	}
	if strings.ContainsAny(v, " \t<>,;") {
		return ""
	}
	return v
}
