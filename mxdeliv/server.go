package mxdeliv

import (
	"log"
	"net/http"
	"time"
)

// Bounds of the listener.
const (
	// MaxConnections bounds the connections served at once; past it,
	// new connections wait in the listen queue until one closes.
	MaxConnections = 64
	// maxHeaderBytes bounds a request's header: room for MaxRecipients
	// X-MAIL-TO headers of ordinary addresses.
	maxHeaderBytes = 256 << 10
)

// NewServer returns the HTTP server of the /mxdeliv listener: h on every
// path (h answers 404 outside Path), with timeouts on the request header,
// on each read of the body and on idle connections.
func NewServer(h http.Handler, logger *log.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          logger,
		// "OPTIONS *" goes to h too (which answers 404), not to
		// net/http's own 200.
		DisableGeneralOptionsHandler: true,
	}
}
