package transport

import (
	"context"
	"crypto/tls"
	"net/http"
	"time"

	"github.com/emersion/go-smtp"

	"filtermail/mxdeliv"
)

// HTTPS bounds: the TLS handshake, and the wait for the other relay's
// answer once the message is sent (it judges and hands the mail to its
// Postfix first).
const (
	httpsHandshakeTimeout = 15 * time.Second
	httpsReplyTimeout     = 2 * time.Minute
	httpsIdleTimeout      = 90 * time.Second
)

// httpsChannel delivers with POST https://{mx}/mxdeliv: with certificates
// verified, or for IP literals and test domains not.
type httpsChannel struct {
	verified, unverified mxdeliv.Client
}

func newHTTPSChannel(d *dialer, maxPerHost int) *httpsChannel {
	return &httpsChannel{
		verified:   mxdeliv.Client{HTTP: newHTTPClient(d, true, maxPerHost)},
		unverified: mxdeliv.Client{HTTP: newHTTPClient(d, false, maxPerHost)},
	}
}

// newHTTPClient returns the client of one channel: connections kept
// alive, TLS sessions resumed, HTTP/2 where the relay offers it, no
// redirect followed (a relay answers /mxdeliv itself).
func newHTTPClient(d *dialer, verify bool, maxPerHost int) *http.Client {
	t := &http.Transport{
		DialContext: d.DialContext,
		TLSClientConfig: &tls.Config{
			MinVersion:         tls.VersionTLS12,
			ClientSessionCache: tls.NewLRUClientSessionCache(0),
			InsecureSkipVerify: !verify,
		},
		ForceAttemptHTTP2:      true,
		TLSHandshakeTimeout:    httpsHandshakeTimeout,
		ResponseHeaderTimeout:  httpsReplyTimeout,
		IdleConnTimeout:        httpsIdleTimeout,
		MaxIdleConns:           maxIdle,
		MaxIdleConnsPerHost:    maxPerHost,
		MaxResponseHeaderBytes: 64 << 10,
		DisableCompression:     true,
	}
	return &http.Client{
		Transport: t,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// deliver posts msg to host for dest. The second result is false when
// host gave no answer of the contract: then SMTP is to be tried.
func (ch *httpsChannel) deliver(ctx context.Context, dest destination, host string, env envelope, msg *message) (*smtp.SMTPError, mxdeliv.Result) {
	c := &ch.verified
	if !dest.verify {
		c = &ch.unverified
	}
	res := c.Deliver(ctx, host, env.from, env.to, msg.reader, msg.size)
	if res.Outcome == mxdeliv.Unavailable {
		return nil, res
	}
	code, enhanced, text, _ := parseReply(res.Reply)
	return remoteReply(code, enhanced, text, HTTPS), res
}

// close closes idle connections.
func (ch *httpsChannel) close() {
	ch.verified.HTTP.CloseIdleConnections()
	ch.unverified.HTTP.CloseIdleConnections()
}
