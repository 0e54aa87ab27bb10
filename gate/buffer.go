package gate

import "io"

// Chunk sizes of a Buffer: small first, for the many small
// messages, then growing up to maxChunk.
const (
	minChunk = 4 << 10
	maxChunk = 256 << 10
)

// Buffer holds one message in chunks, so that it grows without
// copying what it already holds: the message is in memory once.
type Buffer struct {
	chunks [][]byte
	size   int64
}

// ReadFrom reads r to its end into the buffer.
func (b *Buffer) ReadFrom(r io.Reader) (int64, error) {
	var total int64
	for {
		last := len(b.chunks) - 1
		if last < 0 || len(b.chunks[last]) == cap(b.chunks[last]) {
			size := minChunk
			if last >= 0 {
				size = min(2*cap(b.chunks[last]), maxChunk)
			}
			b.chunks = append(b.chunks, make([]byte, 0, size))
			last++
		}
		c := b.chunks[last]
		n, err := r.Read(c[len(c):cap(c)])
		b.chunks[last] = c[:len(c)+n]
		b.size += int64(n)
		total += int64(n)
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// Len returns the number of bytes held.
func (b *Buffer) Len() int64 { return b.size }

// Reader returns a reader of the message from its start.
func (b *Buffer) Reader() *BufferReader {
	return &BufferReader{chunks: b.chunks}
}

// BufferReader reads a Buffer without changing it.
type BufferReader struct {
	chunks [][]byte
	i, off int // position: chunk and offset in it
}

func (r *BufferReader) Read(p []byte) (int, error) {
	for r.i < len(r.chunks) && r.off == len(r.chunks[r.i]) {
		r.i, r.off = r.i+1, 0
	}
	if r.i == len(r.chunks) {
		return 0, io.EOF
	}
	n := copy(p, r.chunks[r.i][r.off:])
	r.off += n
	return n, nil
}

// WriteTo writes the rest of the message to w, chunk by chunk.
func (r *BufferReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for ; r.i < len(r.chunks); r.i, r.off = r.i+1, 0 {
		n, err := w.Write(r.chunks[r.i][r.off:])
		total += int64(n)
		if err != nil {
			r.off += n
			return total, err
		}
	}
	return total, nil
}
