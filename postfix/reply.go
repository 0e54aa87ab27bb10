package postfix

import (
	"bufio"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/emersion/go-smtp"
)

// Bounds of a reply from Postfix.
const (
	maxReplyLine  = 4096
	maxReplyLines = 100
)

var errBadReply = errors.New("malformed reply")

// readReply reads one reply, all of its lines. It returns its code and
// its text as go-smtp's server writes it back: lines joined by "\n", the
// enhanced status code of the first line taken apart.
func readReply(br *bufio.Reader) (*smtp.SMTPError, error) {
	var lines []string
	code := 0
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("reply line longer than %d bytes", maxReplyLine)
		}
		if err != nil {
			return nil, err
		}
		s := strings.TrimRight(string(line), "\r\n")
		if len(s) < 3 || (len(s) > 3 && s[3] != ' ' && s[3] != '-') {
			return nil, fmt.Errorf("%w: %q", errBadReply, s)
		}
		c, err := strconv.Atoi(s[:3])
		if err != nil || c < 200 || c > 599 || (code != 0 && c != code) {
			return nil, fmt.Errorf("%w: %q", errBadReply, s)
		}
		code = c
		if len(s) > 4 {
			lines = append(lines, s[4:])
		} else {
			lines = append(lines, "")
		}
		if len(s) == 3 || s[3] == ' ' {
			break
		}
		if len(lines) == maxReplyLines {
			return nil, fmt.Errorf("reply longer than %d lines", maxReplyLines)
		}
	}
	reply := &smtp.SMTPError{Code: code, EnhancedCode: smtp.NoEnhancedCode}
	if e, text, ok := enhancedCode(lines[0], code); ok {
		reply.EnhancedCode = e
		lines[0] = text
		for i := 1; i < len(lines); i++ {
			// Postfix repeats the code on every line.
			if _, text, ok := enhancedCode(lines[i], code); ok {
				lines[i] = text
			}
		}
	}
	reply.Message = strings.Join(lines, "\n")
	return reply, nil
}

// enhancedCode takes an RFC 3463 status code, whose class is the reply
// code's, off the start of text.
func enhancedCode(text string, code int) (smtp.EnhancedCode, string, bool) {
	word, rest, _ := strings.Cut(text, " ")
	parts := strings.Split(word, ".")
	if len(parts) != 3 {
		return smtp.EnhancedCode{}, text, false
	}
	var e smtp.EnhancedCode
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 999 || len(p) > 3 {
			return smtp.EnhancedCode{}, text, false
		}
		e[i] = n
	}
	if e[0] != code/100 {
		return smtp.EnhancedCode{}, text, false
	}
	return e, rest, true
}
