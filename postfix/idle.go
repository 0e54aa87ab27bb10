package postfix

import (
	"bufio"
	"net"
	"sync"
	"time"
)

// Connections to Postfix are kept between transactions: a message on a
// connection that is already greeted saves the connect and EHLO, and
// Postfix's smtpd takes any number of transactions on one connection.
const (
	// maxIdle bounds the connections kept; each holds one of the
	// reinjection service's smtpd processes (100 on a relay).
	maxIdle = 16
	// idleTimeout is how long a connection is kept unused, well below
	// Postfix's smtpd_timeout (300 s, 10 s when Postfix is under
	// stress).
	idleTimeout = 5 * time.Second
)

// link is a greeted connection to Postfix's reinjection smtpd, between
// transactions.
type link struct {
	conn     net.Conn
	br       *bufio.Reader
	bw       *bufio.Writer
	chunking bool
	utf8     bool
	since    time.Time // idle since
}

// idleLinks are the connections kept. A timer closes them once they
// have waited idleTimeout, so that Postfix's processes are not held when
// mail stops coming.
type idleLinks struct {
	mu    sync.Mutex
	links []*link // the oldest first
	timer *time.Timer
}

// take returns the connection used last that is still open, or nil.
func (p *idleLinks) take() *link {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sweep()
	for n := len(p.links); n > 0; n = len(p.links) {
		l := p.links[n-1]
		p.links = p.links[:n-1]
		if l.alive() {
			return l
		}
		l.conn.Close()
	}
	return nil
}

// put keeps l, and reports whether it did.
func (p *idleLinks) put(l *link) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sweep()
	if len(p.links) >= maxIdle {
		return false
	}
	l.since = time.Now()
	p.links = append(p.links, l)
	if p.timer == nil {
		p.timer = time.AfterFunc(idleTimeout, p.expire)
	}
	return true
}

// expire closes the connections that waited too long, and sets the timer
// for the next one to.
func (p *idleLinks) expire() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sweep()
	p.timer = nil
	if len(p.links) > 0 {
		p.timer = time.AfterFunc(time.Until(p.links[0].since.Add(idleTimeout))+time.Millisecond, p.expire)
	}
}

// sweep closes the connections kept too long; the oldest come first.
func (p *idleLinks) sweep() {
	n := 0
	for n < len(p.links) && time.Since(p.links[n].since) > idleTimeout {
		p.links[n].conn.Close()
		n++
	}
	p.links = append(p.links[:0], p.links[n:]...)
}

// alive reports whether Postfix has said nothing on the connection since
// it was kept: a 421 or a close means it is gone.
func (l *link) alive() bool {
	l.conn.SetReadDeadline(time.Now())
	_, err := l.br.Peek(1)
	l.conn.SetReadDeadline(time.Time{})
	return isTimeout(err)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
