package gate

import "bytes"

// checkLineEnds reports whether every line of the message in b ends in
// CRLF: no bare CR, no bare LF, a CRLF at the end, and not empty. Postfix
// never sends anything else; a message that does is refused as SMTP
// smuggling.
func checkLineEnds(b *Buffer) bool {
	var prev byte // the last byte of the chunks before
	for _, chunk := range b.chunks {
		for len(chunk) > 0 {
			i := bytes.IndexAny(chunk, "\r\n")
			if i < 0 {
				if prev == '\r' {
					return false
				}
				prev = chunk[len(chunk)-1]
				break
			}
			if (chunk[i] == '\n') != (prev == '\r' && i == 0) {
				return false // a bare LF, or a CR before this byte
			}
			if i > 0 && prev == '\r' {
				return false
			}
			prev, chunk = chunk[i], chunk[i+1:]
		}
	}
	return prev == '\n'
}
