// Package mxdeliv is mail between relays over HTTPS: POST /mxdeliv. The
// Handler takes mail from other relays (the relay's web server publishes it
// over HTTPS), each request one transaction for the incoming filter's gate,
// judged exactly as incoming SMTP is. The Client delivers to other relays'
// /mxdeliv, and says what their answer means for the mail.
package mxdeliv

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"filtermail/gate"
	"filtermail/metrics"
)

// Path is the one path the listener serves.
const Path = "/mxdeliv"

// Limits of a request.
const (
	// MaxRecipients bounds the X-MAIL-TO headers of a request, as
	// Postfix's smtpd_recipient_limit bounds RCPT commands.
	MaxRecipients = 1000
	// bodyIdleTimeout bounds the wait for each read of the body, as
	// Postfix's smtpd_timeout bounds each read of DATA.
	bodyIdleTimeout = 5 * time.Minute
	// replyTimeout bounds writing the response once the message is
	// judged.
	replyTimeout = time.Minute
)

// Handler answers POST /mxdeliv: the envelope in X-MAIL-FROM and X-MAIL-TO
// headers, the message as the body. 200 with "250 OK" means Postfix has
// the message; 400 carries the SMTP reply of a refusal (5xx) or of a fault
// to retry (4xx); 413 a body over MaxMessageBytes.
type Handler struct {
	Gate            *gate.Gate
	MaxMessageBytes int64
	Log             *log.Logger
	Metrics         *metrics.Metrics

	bodyIdle time.Duration // bodyIdleTimeout if 0; tests set it
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	if r.Body != http.NoBody {
		// net/http reads what a handler leaves of a body, up to 256
		// KiB, to keep the connection, and sets no deadline for it: an
		// answer given before the body is read (404, 405, a bad
		// envelope) would wait for a client that stopped sending.
		// Bound that wait as a read of the body is bounded; each read
		// of the body sets the deadline again.
		rc.SetReadDeadline(time.Now().Add(h.bodyIdleTimeout()))
	}
	status, text := h.serve(w, r)
	h.Metrics.MxdelivRequest(status)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	switch status {
	case http.StatusMethodNotAllowed:
		w.Header().Set("Allow", http.MethodPost)
	case http.StatusRequestEntityTooLarge:
		// The rest of the body is not wanted: answer now and close,
		// rather than read it to keep the connection.
		w.Header().Set("Connection", "close")
	}
	rc.SetWriteDeadline(time.Now().Add(replyTimeout))
	w.WriteHeader(status)
	io.WriteString(w, text)
}

// serve handles one request and returns the status and body to answer.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request) (int, string) {
	switch {
	case r.URL.Path != Path:
		return http.StatusNotFound, "404 not found\n"
	case r.Method != http.MethodPost:
		return http.StatusMethodNotAllowed, "405 method not allowed\n"
	}
	from, to, err := envelope(r.Header)
	if err != nil {
		return http.StatusBadRequest, replyText(err)
	}
	if r.ContentLength > h.MaxMessageBytes {
		h.Gate.TooLarge(h.MaxMessageBytes, len(to))
		return http.StatusRequestEntityTooLarge, replyText(errTooLarge)
	}
	tx, err := h.Gate.Mail(r.Context(), from, nil)
	if err != nil {
		return http.StatusBadRequest, replyText(err)
	}
	defer tx.Abort()
	// A request is one answer for all its recipients: one refused is
	// all refused.
	for _, rcpt := range to {
		if err := tx.Rcpt(rcpt); err != nil {
			return http.StatusBadRequest, replyText(err)
		}
	}
	body := &idleReader{r: http.MaxBytesReader(w, r.Body, h.MaxMessageBytes), rc: http.NewResponseController(w), timeout: h.bodyIdleTimeout()}
	err = tx.Data(body)
	var rerr *gate.ReadError
	if errors.As(err, &rerr) {
		var tooLarge *http.MaxBytesError
		if errors.As(rerr.Err, &tooLarge) {
			h.Gate.TooLarge(h.MaxMessageBytes, len(to))
			return http.StatusRequestEntityTooLarge, replyText(errTooLarge)
		}
		h.Log.Printf("Incoming: /mxdeliv body not received whole: %v", rerr.Err)
		return http.StatusBadRequest, replyText(errBodyBroken)
	}
	if err != nil {
		return http.StatusBadRequest, replyText(err)
	}
	return http.StatusOK, "250 OK"
}

func (h *Handler) bodyIdleTimeout() time.Duration {
	if h.bodyIdle > 0 {
		return h.bodyIdle
	}
	return bodyIdleTimeout
}

// idleReader gives each read of a request body its timeout.
type idleReader struct {
	r       io.Reader
	rc      *http.ResponseController
	timeout time.Duration
}

func (r *idleReader) Read(p []byte) (int, error) {
	r.rc.SetReadDeadline(time.Now().Add(r.timeout))
	return r.r.Read(p)
}

// The replies of the listener's own.
var (
	errTooLarge      = &smtp.SMTPError{Code: 552, EnhancedCode: smtp.NoEnhancedCode, Message: "Message exceeds maximum size"}
	errBodyBroken    = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "Message not received whole, try again"}
	errNoRecipients  = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "Error: no valid recipients"}
	errTooMany       = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 5, 3}, Message: "Error: too many recipients"}
	errBadSender     = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 7}, Message: "Bad sender address syntax"}
	errBadRecipient  = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "Bad recipient address syntax"}
	errUnexpectedErr = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Internal error, try again later"}
)

// envelope reads the sender and the recipients of a request: X-MAIL-FROM,
// absent or empty for <>, and one X-MAIL-TO per recipient. Angle brackets
// around an address are tolerated.
func envelope(h http.Header) (string, []string, error) {
	from, ok := address(h.Get("X-Mail-From"))
	if !ok {
		return "", nil, errBadSender
	}
	values := h.Values("X-Mail-To")
	if len(values) > MaxRecipients {
		return "", nil, errTooMany
	}
	var to []string
	for _, v := range values {
		rcpt, ok := address(v)
		if !ok {
			return "", nil, errBadRecipient
		}
		if rcpt != "" {
			to = append(to, rcpt)
		}
	}
	if len(to) == 0 {
		return "", nil, errNoRecipients
	}
	return from, to, nil
}

// address returns the address in a header value, without surrounding
// space and angle brackets, and whether it can go into an SMTP envelope.
func address(v string) (string, bool) {
	v = strings.TrimSpace(v)
	if strings.HasPrefix(v, "<") && strings.HasSuffix(v, ">") {
		v = strings.TrimSpace(v[1 : len(v)-1])
	}
	if len(v) > 512 || strings.ContainsFunc(v, func(r rune) bool {
		return r <= ' ' || r == '<' || r == '>' || r == 0x7f
	}) {
		return "", false
	}
	return v, true
}

// replyText is an SMTP reply as the body of a response: the code, the
// enhanced code if it has one, and the text.
func replyText(err error) string {
	var reply *smtp.SMTPError
	if !errors.As(err, &reply) {
		reply = errUnexpectedErr
	}
	switch reply.EnhancedCode {
	case smtp.NoEnhancedCode:
		return fmt.Sprintf("%d %s", reply.Code, reply.Message)
	case smtp.EnhancedCodeNotSet:
		return fmt.Sprintf("%d %d.0.0 %s", reply.Code, reply.Code/100, reply.Message)
	}
	e := reply.EnhancedCode
	return fmt.Sprintf("%d %d.%d.%d %s", reply.Code, e[0], e[1], e[2], reply.Message)
}
