package mxdeliv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Outcome is what a delivery over POST /mxdeliv came to.
type Outcome int

const (
	// Delivered: the relay answered 200; the mail is with it.
	Delivered Outcome = iota
	// Refused: the relay answered with a 5xx SMTP reply; the mail is
	// not to be sent again, over HTTPS or SMTP.
	Refused
	// Deferred: the relay answered with a 4xx SMTP reply; the mail is to
	// be tried again later.
	Deferred
	// Unavailable: no answer of the contract (no connection, TLS failed,
	// a timeout, or a status without an SMTP reply, such as a 404 from a
	// relay that has no /mxdeliv); the mail may go over SMTP instead.
	Unavailable
)

func (o Outcome) String() string {
	switch o {
	case Delivered:
		return "delivered"
	case Refused:
		return "refused"
	case Deferred:
		return "deferred"
	}
	return "unavailable"
}

// maxReplyBytes bounds what is read of a response body: an SMTP reply.
const maxReplyBytes = 4 << 10

// Result is the outcome of one delivery and what the relay said.
type Result struct {
	Outcome Outcome
	Status  int // the HTTP status; 0 without a response
	// Reply is the relay's SMTP reply on one line ("250 OK", "523 …"),
	// or for Unavailable what went wrong. It names no address.
	Reply string
}

// Client delivers mail to other relays with POST /mxdeliv.
type Client struct {
	// HTTP makes the requests; its transport decides TLS, pooling and
	// timeouts of connections.
	HTTP *http.Client
}

// Deliver posts the message, of size bytes, with its envelope to
// https://host/mxdeliv. host is a domain or an IP address, with a port
// where it is not 443. msg returns the message from its first byte each
// time it is called: a request that meets a connection the server had
// closed is sent again on a new one.
func (c *Client) Deliver(ctx context.Context, host, from string, to []string, msg func() io.Reader, size int64) Result {
	u := url.URL{Scheme: "https", Host: urlHost(host), Path: Path}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), msg())
	if err != nil {
		return Result{Outcome: Unavailable, Reply: err.Error()}
	}
	req.ContentLength = size
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(msg()), nil }
	req.Header.Set("Content-Type", "message/rfc822")
	req.Header.Set("X-Mail-From", from)
	for _, rcpt := range to {
		req.Header.Add("X-Mail-To", rcpt)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return Result{Outcome: Unavailable, Reply: transportError(err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxReplyBytes))
	if err != nil {
		return Result{Outcome: Unavailable, Status: resp.StatusCode, Reply: transportError(err)}
	}
	// Read a little more, so that the connection can be used again.
	io.CopyN(io.Discard, resp.Body, maxReplyBytes)
	return judge(resp.StatusCode, string(body))
}

// judge reads a response by the contract of /mxdeliv.
func judge(status int, body string) Result {
	reply := oneLine(body)
	code, isReply := replyCode(reply)
	switch {
	case status == http.StatusOK:
		if !isReply {
			reply = "250 OK"
		}
		return Result{Outcome: Delivered, Status: status, Reply: reply}
	// The contract: a refusal is 400 (413 for the size) with a 5xx
	// reply; trouble is 400 or 5xx with a 4xx reply. Any other status,
	// such as a 404 whose text happens to start with three digits, is no
	// answer of a relay's.
	case isReply && code >= 500 && (status == http.StatusBadRequest || status == http.StatusRequestEntityTooLarge):
		return Result{Outcome: Refused, Status: status, Reply: reply}
	case isReply && code < 500 && code >= 400 && (status == http.StatusBadRequest || status >= 500):
		return Result{Outcome: Deferred, Status: status, Reply: reply}
	}
	return Result{Outcome: Unavailable, Status: status, Reply: fmt.Sprintf("HTTP %d without an SMTP reply", status)}
}

// replyCode returns the code of an SMTP reply line, and whether s is one:
// three digits, 2 to 5 first, then a space or the end.
func replyCode(s string) (int, bool) {
	if len(s) < 3 || s[0] < '2' || s[0] > '5' || len(s) > 3 && s[3] != ' ' {
		return 0, false
	}
	code, err := strconv.Atoi(s[:3])
	return code, err == nil && code >= 200
}

// oneLine folds a reply of several lines into one: "550-a\r\n550 b"
// becomes "550 a b". Control bytes become spaces.
func oneLine(s string) string {
	lines := strings.FieldsFunc(s, func(r rune) bool { return r == '\r' || r == '\n' })
	for i, l := range lines {
		if i > 0 && len(l) >= 4 && l[:3] == lines[0][:min(3, len(lines[0]))] && (l[3] == ' ' || l[3] == '-') {
			l = l[4:]
		}
		lines[i] = strings.TrimSpace(l)
	}
	out := strings.Join(lines, " ")
	if len(out) >= 4 && out[3] == '-' {
		out = out[:3] + " " + out[4:]
	}
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, out)
}

// transportError says why no response came, without the URL net/http
// puts in front.
func transportError(err error) string {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	var nerr net.Error
	if errors.As(err, &nerr) && nerr.Timeout() {
		return "timeout: " + err.Error()
	}
	return err.Error()
}

// urlHost is host as the host of a URL: an IPv6 address in brackets.
func urlHost(host string) string {
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.Contains(host, ":") {
		return "[" + host + "]"
	}
	return host
}
