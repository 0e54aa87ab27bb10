package transport

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/emersion/go-smtp"

	"filtermail/metrics"
)

// Channel is how a delivery reached the other relay, or that it reached
// none.
type Channel string

// The channels, as metrics labels.
const (
	HTTPS Channel = metrics.ChannelHTTPS // POST https://{mx}/mxdeliv
	SMTP  Channel = metrics.ChannelSMTP  // SMTP on port 25
	None  Channel = metrics.ChannelNone  // no relay answered: DNS, or no mail exchanger reachable
)

// name is the channel as it ends a reply: "(HTTPS)".
func (c Channel) name() string {
	switch c {
	case HTTPS:
		return "HTTPS"
	case SMTP:
		return "SMTP"
	}
	return ""
}

// Outcome is what a delivery to a recipient came to, as Postfix takes the
// reply: a metrics label.
type Outcome string

// The outcomes.
const (
	Delivered Outcome = metrics.DeliveryDelivered // 2xx: the other relay has the mail
	Deferred  Outcome = metrics.DeliveryDeferred  // 4xx: Postfix tries again later
	Bounced   Outcome = metrics.DeliveryBounced   // 5xx: Postfix returns the mail to its sender
)

// outcomeOf is the outcome a reply means.
func outcomeOf(r *smtp.SMTPError) Outcome {
	switch {
	case r.Code < 300:
		return Delivered
	case r.Code < 500:
		return Deferred
	}
	return Bounced
}

// reply makes an LMTP reply.
func reply(code int, enhanced smtp.EnhancedCode, format string, args ...any) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: enhanced, Message: fmt.Sprintf(format, args...)}
}

// remoteReply is a reply of the other relay as the LMTP reply of a
// recipient: one line, whatever the relay sent, saying the channel. A 421
// (the relay closing its connection) is a 451: on LMTP, 421 would say
// that the transport is closing.
func remoteReply(code int, enhanced smtp.EnhancedCode, text string, ch Channel) *smtp.SMTPError {
	if code == 421 {
		code = 451
	}
	if code < 200 || code > 599 {
		code = 451
	}
	class := code / 100
	if enhanced == smtp.NoEnhancedCode || enhanced == (smtp.EnhancedCode{}) || enhanced[0] != class {
		enhanced = smtp.EnhancedCode{class, 0, 0}
	}
	text = oneLine(text)
	if text == "" {
		text = "OK"
	}
	if n := ch.name(); n != "" {
		text += " (" + n + ")"
	}
	return &smtp.SMTPError{Code: code, EnhancedCode: enhanced, Message: text}
}

// maxReplyText bounds the text of a reply passed on: Postfix takes reply
// lines of up to 2048 bytes, and the reply keeps its code and channel.
const maxReplyText = 1000

// oneLine folds text into one line of printable characters: line breaks
// and control bytes become spaces, runs of spaces one.
func oneLine(text string) string {
	text = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, text)
	text = strings.Join(strings.Fields(text), " ")
	if len(text) > maxReplyText {
		text = strings.ToValidUTF8(text[:maxReplyText], "") + "…"
	}
	return text
}

// parseReply splits an SMTP reply line such as "554 5.7.1 No DKIM
// signature found" into its code, enhanced code and text. ok is false
// when line does not start with a code.
func parseReply(line string) (code int, enhanced smtp.EnhancedCode, text string, ok bool) {
	if len(line) < 3 {
		return 0, smtp.NoEnhancedCode, "", false
	}
	code, err := strconv.Atoi(line[:3])
	if err != nil || code < 200 || code > 599 || len(line) > 3 && line[3] != ' ' {
		return 0, smtp.NoEnhancedCode, "", false
	}
	text = strings.TrimSpace(line[3:])
	enhanced = smtp.NoEnhancedCode
	if first, rest, _ := strings.Cut(text, " "); isEnhanced(first) {
		var e smtp.EnhancedCode
		fmt.Sscanf(first, "%d.%d.%d", &e[0], &e[1], &e[2])
		enhanced, text = e, rest
	}
	return code, enhanced, text, true
}

// isEnhanced reports whether s is an enhanced status code: class.subject.detail.
func isEnhanced(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || parts[0][0] < '2' || parts[0][0] > '5' {
		return false
	}
	for _, p := range parts[1:] {
		if len(p) < 1 || len(p) > 3 {
			return false
		}
		for _, c := range []byte(p) {
			if c < '0' || c > '9' {
				return false
			}
		}
	}
	return true
}
