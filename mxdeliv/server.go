package mxdeliv

import (
	"log"
	"net"
	"net/http"
	"sync"
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
	}
}

// LimitListener returns a listener that has at most n of ln's connections
// open at once: Accept waits while n are open.
func LimitListener(ln net.Listener, n int) net.Listener {
	return &limitListener{Listener: ln, slots: make(chan struct{}, n)}
}

type limitListener struct {
	net.Listener
	slots chan struct{}
}

func (l *limitListener) Accept() (net.Conn, error) {
	l.slots <- struct{}{}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.slots }}, nil
}

// limitConn gives its slot back when it is closed, once.
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
