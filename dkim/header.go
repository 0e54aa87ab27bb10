package dkim

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
)

// errHeaderTooLarge is returned by readHeader for a header of more than
// maxHeaderBytes.
var errHeaderTooLarge = fmt.Errorf("header larger than %d bytes: not verified", maxHeaderBytes)

// readHeader reads the message header from br, up to and including the
// empty line that ends it. A message that ends inside its header gets that
// line added, so that go-msgauth reads it as a message with an empty body
// (which RFC 6376 treats as one with no body). A header of more than limit
// bytes is errHeaderTooLarge.
func readHeader(br *bufio.Reader, limit int) ([]byte, error) {
	var hdr []byte
	lineStart := true
	for {
		chunk, err := br.ReadSlice('\n')
		if len(hdr)+len(chunk) > limit {
			return nil, errHeaderTooLarge
		}
		hdr = append(hdr, chunk...)
		switch {
		case err == bufio.ErrBufferFull:
			lineStart = false
			continue
		case err == io.EOF:
			if len(hdr) > 0 && hdr[len(hdr)-1] != '\n' {
				hdr = append(hdr, "\r\n"...)
			}
			return append(hdr, "\r\n"...), nil
		case err != nil:
			return nil, err
		}
		if lineStart && (string(chunk) == "\n" || string(chunk) == "\r\n") {
			return hdr, nil
		}
		lineStart = true
	}
}

// signature is what the verifier reads itself from one DKIM-Signature
// header field, before go-msgauth checks it.
type signature struct {
	domain   string // d=, white space removed
	selector string // s=, white space removed
	hasL     bool   // an l= tag is present
}

// signatures returns the DKIM-Signature header fields of hdr, in order. It
// splits the header into fields as go-msgauth does (continuation lines start
// with a space or a tab; the name is what precedes the first colon, trimmed),
// so that the i-th signature here is go-msgauth's i-th verification.
func signatures(hdr []byte) []signature {
	var sigs []signature
	var field strings.Builder
	inField := false
	flush := func() {
		if inField {
			if name, value, _ := strings.Cut(field.String(), ":"); strings.EqualFold(strings.TrimSpace(name), "DKIM-Signature") {
				sigs = append(sigs, parseSignature(strings.TrimSpace(value)))
			}
		}
		field.Reset()
		inField = false
	}
	for len(hdr) > 0 {
		line := hdr
		if i := strings.IndexByte(string(hdr), '\n'); i >= 0 {
			line, hdr = hdr[:i], hdr[i+1:]
		} else {
			hdr = nil
		}
		line = trimCR(line)
		if len(line) == 0 {
			break // the end of the header
		}
		if inField && (line[0] == ' ' || line[0] == '\t') {
			field.WriteString("\r\n")
			field.Write(line)
			continue
		}
		flush()
		field.Write(line)
		inField = true
	}
	flush()
	return sigs
}

func trimCR(line []byte) []byte {
	if n := len(line); n > 0 && line[n-1] == '\r' {
		return line[:n-1]
	}
	return line
}

// parseSignature reads the tags of a DKIM-Signature value: tag=value
// pairs separated by semicolons, names trimmed of white space. It reads
// them as go-msgauth does, but never fails: an l= tag counts wherever it
// appears, also in a value go-msgauth would refuse as malformed.
func parseSignature(value string) signature {
	var sig signature
	seen := map[string]bool{}
	for part := range strings.SplitSeq(value, ";") {
		name, v, ok := strings.Cut(part, "=")
		if !ok {
			continue
		}
		name = strings.TrimSpace(name)
		if seen[name] {
			continue // a duplicate: go-msgauth refuses the signature
		}
		seen[name] = true
		switch name {
		case "d":
			sig.domain = stripWhitespace(v)
		case "s":
			sig.selector = stripWhitespace(v)
		case "l":
			sig.hasL = true
		}
	}
	return sig
}

// stripWhitespace removes white space as go-msgauth does from the values it
// reads (bytes that are not UTF-8 become U+FFFD there too).
func stripWhitespace(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, s)
}

// errBlankRun is why a message whose body has too long a run of empty
// lines is not verified.
var errBlankRun = fmt.Errorf("body has a run of more than %d empty lines: not verified", maxBlankRun/2)

// bodyReader hands the body on to go-msgauth. It reads in full chunks of
// the size asked (go-msgauth's canonicalizers cost less for fewer, larger
// writes), and stops with io.EOF, errBlankRun kept in tripped, once a run of
// line ends (with only spaces and tabs between them) passes maxBlankRun
// bytes: go-msgauth's simple body canonicalization copies such a run again
// on every write, in time quadratic in its length, and its relaxed one
// holds it in memory.
type bodyReader struct {
	r       io.Reader
	limit   int // maxBlankRun
	run     int
	tripped error
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.tripped != nil {
		return 0, io.EOF
	}
	n, err := io.ReadFull(b.r, p)
	if err == io.ErrUnexpectedEOF {
		err = io.EOF
	}
	if i := b.scan(p[:n]); i >= 0 {
		b.tripped = errBlankRun
		return i, io.EOF
	}
	return n, err
}

// blank tells the bytes that do not end a run: line ends and the white
// space between them.
var blank = [256]bool{'\r': true, '\n': true, ' ': true, '\t': true}

// scan follows the run of line ends through p and returns the index of the
// byte that takes it past the limit, or -1. It looks at every byte only at
// the ends of p: in between, a run past the limit spans more than limit
// bytes, so looking at every limit-th byte finds it, and only blank bytes
// found that way lead to counting.
func (b *bodyReader) scan(p []byte) int {
	// The run carried from the previous read goes on to the first byte
	// that is not blank.
	i := 0
	for ; i < len(p) && blank[p[i]]; i++ {
		if i := b.count(p, i); i >= 0 {
			return i
		}
	}
	if i == len(p) {
		return -1
	}
	// The blank bytes at the end start the run carried to the next read.
	j := len(p) - 1
	for blank[p[j]] {
		j--
	}
	// In between, runs start and end within p[i:j].
	for k := i; k < j; k += b.limit {
		if !blank[p[k]] {
			continue
		}
		start, end := k, k
		for blank[p[start-1]] {
			start--
		}
		for blank[p[end]] {
			end++
		}
		b.run = 0
		for at := start; at < end; at++ {
			if at := b.count(p, at); at >= 0 {
				return at
			}
		}
		k = end
	}
	b.run = 0
	for at := j + 1; at < len(p); at++ {
		if at := b.count(p, at); at >= 0 {
			return at
		}
	}
	return -1
}

// count adds p[at] to the run if it is a line end, and returns at if that
// takes the run past the limit, or -1.
func (b *bodyReader) count(p []byte, at int) int {
	if p[at] == '\r' || p[at] == '\n' {
		b.run++
		if b.run > b.limit {
			return at
		}
	}
	return -1
}

// errReader reads the message for the verifier. A read error ends the
// message (io.EOF) and is kept in err: go-msgauth, given a failing reader
// while it checks several signatures, returns without closing the pipes
// of its other goroutines, which then wait forever.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	if e.err != nil {
		return 0, io.EOF
	}
	n, err := e.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		e.err = err
		err = io.EOF
	}
	return n, err
}
