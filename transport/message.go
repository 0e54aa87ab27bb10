package transport

import (
	"bytes"
	"errors"
	"io"
	"sync"
)

// budget bounds the message bytes held across all deliveries in flight.
type budget struct {
	mu          sync.Mutex
	used, limit int64
}

// reserve takes n bytes of the budget, if that many are left.
func (b *budget) reserve(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.limit {
		return false
	}
	b.used += n
	return true
}

// release gives n bytes back.
func (b *budget) release(n int64) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
}

// left is what the budget has left now.
func (b *budget) left() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.limit - b.used
}

// Chunk sizes of a held message: small messages take little, large ones
// are held in chunks that are not copied as the message grows.
const (
	firstChunk = 4 << 10
	maxChunk   = 64 << 10
)

// errBudget is reading a message that the budget has no room for.
var errBudget = errors.New("transport: memory budget for messages in flight used up")

// message is a message held for delivery, in chunks taken from a budget.
// It is read by every delivery of it, at once; it is given back once,
// when they are all done.
type message struct {
	chunks   [][]byte
	size     int64
	budget   *budget
	reserved int64
}

// newMessage returns an empty message whose memory is reserved from b as
// it grows.
func newMessage(b *budget) *message { return &message{budget: b} }

// Write appends p to the message. It fails with errBudget when b has no
// room for the next chunk.
func (m *message) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		last := len(m.chunks) - 1
		if last < 0 || len(m.chunks[last]) == cap(m.chunks[last]) {
			size := firstChunk
			if last >= 0 {
				size = min(2*cap(m.chunks[last]), maxChunk)
			}
			if !m.budget.reserve(int64(size)) {
				return n, errBudget
			}
			m.reserved += int64(size)
			m.chunks = append(m.chunks, make([]byte, 0, size))
			last++
		}
		k := min(len(p), cap(m.chunks[last])-len(m.chunks[last]))
		m.chunks[last] = append(m.chunks[last], p[:k]...)
		m.size += int64(k)
		n += k
		p = p[k:]
	}
	return n, nil
}

// readMessage reads r into a message whose memory is reserved from b. It
// stops with errBudget when b has no room for the next chunk; the bytes
// held until then are given back.
func readMessage(r io.Reader, b *budget) (*message, error) {
	m := newMessage(b)
	if _, err := io.Copy(m, r); err != nil {
		m.release()
		return nil, err
	}
	return m, nil
}

// reader returns the message from its first byte.
func (m *message) reader() io.Reader {
	rs := make([]io.Reader, len(m.chunks))
	for i, c := range m.chunks {
		rs[i] = bytes.NewReader(c)
	}
	return io.MultiReader(rs...)
}

// release gives the message's memory back to the budget.
func (m *message) release() {
	m.budget.release(m.reserved)
	m.reserved = 0
	m.chunks = nil
}
