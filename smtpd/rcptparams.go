package smtpd

import (
	"bytes"
	"strconv"
	"strings"
)

// chunkSize returns the size of a BDAT command that go-smtp will follow
// by reading the chunk.
func chunkSize(arg string) (uint64, bool) {
	args := strings.Fields(arg)
	if len(args) == 0 || len(args) > 2 || len(args) == 2 && !strings.EqualFold(args[1], "LAST") {
		return 0, false
	}
	size, err := strconv.ParseUint(args[0], 10, 32)
	return size, err == nil
}

// stripRcptParams returns "RCPT TO:<path>\r\n" for a RCPT command line,
// dropping what follows the path. A line it cannot read stays as it is,
// for go-smtp to refuse.
func stripRcptParams(line []byte) []byte {
	const prefix = "RCPT TO:"
	if len(line) < len(prefix) || !strings.EqualFold(string(line[:len(prefix)]), prefix) {
		return line
	}
	rest := bytes.TrimLeft(line[len(prefix):], " ")
	end := pathEnd(rest)
	if end < 0 {
		return line
	}
	out := make([]byte, 0, len(prefix)+end+2)
	out = append(out, line[:len(prefix)]...)
	out = append(out, rest[:end]...)
	return append(out, '\r', '\n')
}

// pathEnd returns the length of the path at the start of s: up to the '>'
// that closes '<', outside quoted strings, or up to the first space for a
// bare address. It returns -1 when there is no path.
func pathEnd(s []byte) int {
	if len(s) == 0 || s[0] != '<' {
		end := bytes.IndexAny(s, " \r\n")
		if end <= 0 {
			return -1
		}
		return end
	}
	quoted := false
	for i := 1; i < len(s); i++ {
		switch {
		case s[i] == '\\' && quoted:
			i++
		case s[i] == '"':
			quoted = !quoted
		case s[i] == '>' && !quoted:
			return i + 1
		case s[i] == '\r' || s[i] == '\n':
			return -1
		}
	}
	return -1
}
