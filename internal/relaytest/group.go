package relaytest

import (
	"net"
	"sync"
)

// group holds the connections and goroutines of one fake relay, so that
// closing the relay ends them all.
type group struct {
	mu       sync.Mutex
	closed   bool
	accepted int
	conns    map[*conn]struct{}
	wg       sync.WaitGroup
}

// conn is a connection a relay accepted, numbered in accept order from 1.
// Closing it lets go of it in its group.
type conn struct {
	net.Conn
	n int
	g *group
}

// Close closes the connection and forgets it.
func (c *conn) Close() error {
	c.g.mu.Lock()
	delete(c.g.conns, c)
	c.g.mu.Unlock()
	return c.Conn.Close()
}

// accept numbers c and holds it until it is closed or the group closes.
// Once the group is closed, it closes c and returns false.
func (g *group) accept(c net.Conn) (*conn, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		c.Close()
		return nil, false
	}
	g.accepted++
	if g.conns == nil {
		g.conns = map[*conn]struct{}{}
	}
	tc := &conn{Conn: c, n: g.accepted, g: g}
	g.conns[tc] = struct{}{}
	return tc, true
}

// connections returns how many connections the group accepted.
func (g *group) connections() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.accepted
}

// enter counts a running goroutine that close waits for; it returns false,
// counting nothing, once the group is closed. A goroutine that entered
// calls leave when it ends.
func (g *group) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.wg.Add(1)
	return true
}

// track counts a goroutine that close waits for, started by a goroutine
// the group counts already; unlike enter, it counts after close too. The
// goroutine calls leave when it ends.
func (g *group) track() { g.wg.Add(1) }

// leave ends what enter or track began.
func (g *group) leave() { g.wg.Done() }

// start runs f in a goroutine that close waits for, unless the group is
// closed.
func (g *group) start(f func()) bool {
	if !g.enter() {
		return false
	}
	go func() {
		defer g.leave()
		f()
	}()
	return true
}

// close closes every connection the group holds; enter fails from now on.
func (g *group) close() {
	g.mu.Lock()
	g.closed = true
	conns := make([]*conn, 0, len(g.conns))
	for c := range g.conns {
		conns = append(conns, c)
	}
	g.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// wait waits for the goroutines of the group to end.
func (g *group) wait() { g.wg.Wait() }
