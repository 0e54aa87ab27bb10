package filter

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// OpenPGP packet tags this package tells apart (RFC 9580, section 5).
const (
	tagPKESK = 1
	tagSKESK = 3
	tagSEIPD = 18
)

// Packets describes an OpenPGP message that has the shape of an encrypted one.
type Packets struct {
	SEIPDVersion int  // 1 or 2
	ESKs         int  // PKESK and SKESK packets before the SEIPD
	Legacy       bool // at least one packet has a legacy-format header
	Partial      bool // the SEIPD body uses partial lengths
}

// CheckPackets reads a binary OpenPGP message from r and checks that it is
// zero or more PKESK or SKESK packets followed by exactly one SEIPD packet,
// version 1 or 2, that ends the data. It accepts both header formats and all
// length encodings. It only reads packet headers and the SEIPD version;
// bodies are skipped, never decrypted.
func CheckPackets(r io.Reader) (Packets, error) {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReader(r)
	}
	var p Packets
	for n := 1; ; n++ {
		h, err := readPacketHeader(br)
		if err == io.EOF {
			return p, errors.New("no SEIPD packet")
		}
		if err != nil {
			return p, fmt.Errorf("packet %d: %w", n, err)
		}
		p.Legacy = p.Legacy || h.legacy
		body := packetBody{r: br, header: h}
		switch h.tag {
		case tagPKESK, tagSKESK:
			if h.partial {
				return p, fmt.Errorf("packet %d: session key packet with partial length", n)
			}
			if err := body.skip(); err != nil {
				return p, fmt.Errorf("packet %d: %w", n, err)
			}
			p.ESKs++
		case tagSEIPD:
			p.Partial = h.partial
			v, err := body.ReadByte()
			if err != nil {
				return p, fmt.Errorf("packet %d: SEIPD without version: %w", n, err)
			}
			if v != 1 && v != 2 {
				return p, fmt.Errorf("packet %d: SEIPD version %d", n, v)
			}
			p.SEIPDVersion = int(v)
			if err := body.skip(); err != nil {
				return p, fmt.Errorf("packet %d: %w", n, err)
			}
			if _, err := br.ReadByte(); err != io.EOF {
				if err == nil {
					return p, fmt.Errorf("packet %d: data after the SEIPD packet", n+1)
				}
				return p, err
			}
			return p, nil
		default:
			return p, fmt.Errorf("packet %d: tag %d where a session key or SEIPD packet belongs", n, h.tag)
		}
	}
}

// packetHeader is a decoded packet header. length is the length of the
// whole body, or of its first part when partial is set.
type packetHeader struct {
	tag           int
	length        int64
	partial       bool // more body parts follow the first
	indeterminate bool // legacy: the body extends to the end of the data
	legacy        bool
}

var errTruncated = errors.New("truncated packet")

// readPacketHeader reads one header. It returns io.EOF only when the data
// ends cleanly before the header's first octet.
func readPacketHeader(r *bufio.Reader) (packetHeader, error) {
	var h packetHeader
	b, err := r.ReadByte()
	if err != nil {
		return h, err
	}
	if b&0x80 == 0 {
		return h, fmt.Errorf("octet %#02x is not a packet header", b)
	}
	if b&0x40 == 0 {
		h.legacy = true
		h.tag = int(b>>2) & 0x0f
		switch b & 0x03 {
		case 0:
			h.length, err = readBigEndian(r, 1)
		case 1:
			h.length, err = readBigEndian(r, 2)
		case 2:
			h.length, err = readBigEndian(r, 4)
		case 3:
			h.indeterminate = true
		}
	} else {
		h.tag = int(b & 0x3f)
		h.length, h.partial, err = readNewLength(r)
	}
	if h.tag == 0 {
		return h, errors.New("reserved packet tag 0")
	}
	return h, err
}

// readNewLength reads an OpenPGP-format body length (RFC 9580, 4.2.1).
func readNewLength(r *bufio.Reader) (length int64, partial bool, err error) {
	b, err := r.ReadByte()
	if err != nil {
		return 0, false, errTruncated
	}
	switch {
	case b < 192:
		return int64(b), false, nil
	case b < 224:
		b2, err := r.ReadByte()
		if err != nil {
			return 0, false, errTruncated
		}
		return int64(b-192)<<8 + int64(b2) + 192, false, nil
	case b < 255:
		return 1 << (b & 0x1f), true, nil
	default:
		length, err = readBigEndian(r, 4)
		return length, false, err
	}
}

func readBigEndian(r *bufio.Reader, n int) (int64, error) {
	var buf [4]byte
	if _, err := io.ReadFull(r, buf[4-n:]); err != nil {
		return 0, errTruncated
	}
	return int64(binary.BigEndian.Uint32(buf[:])), nil
}

// packetBody reads a packet body across its partial-length parts.
type packetBody struct {
	r      *bufio.Reader
	header packetHeader
}

// next moves to the next body part when the current one is used up; it
// returns io.EOF at the end of the body.
func (b *packetBody) next() error {
	for b.header.length == 0 {
		switch {
		case b.header.indeterminate:
			if _, err := b.r.Peek(1); err != nil {
				return io.EOF
			}
			return nil
		case !b.header.partial:
			return io.EOF
		}
		var err error
		b.header.length, b.header.partial, err = readNewLength(b.r)
		if err != nil {
			return err
		}
	}
	return nil
}

// ReadByte returns the next octet of the body.
func (b *packetBody) ReadByte() (byte, error) {
	if err := b.next(); err != nil {
		return 0, err
	}
	c, err := b.r.ReadByte()
	if err == io.EOF {
		return 0, errTruncated
	} else if err != nil {
		return 0, err
	}
	if !b.header.indeterminate {
		b.header.length--
	}
	return c, nil
}

// skip reads past the rest of the body.
func (b *packetBody) skip() error {
	if b.header.indeterminate {
		_, err := io.Copy(io.Discard, b.r)
		return err
	}
	for {
		if err := b.next(); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		n, err := b.r.Discard(int(min(b.header.length, 1<<30)))
		b.header.length -= int64(n)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return errTruncated
		}
		if err != nil {
			return err
		}
	}
}
