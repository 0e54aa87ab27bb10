package gate

import (
	"bytes"
	"crypto/rand"
	"io"
	"testing"
	"testing/iotest"
)

func TestMessageBuffer(t *testing.T) {
	for _, size := range []int{0, 1, minChunk, minChunk + 1, 3*maxChunk + 17} {
		data := make([]byte, size)
		rand.Read(data)
		var b Buffer
		if n, err := b.ReadFrom(iotest.OneByteReader(bytes.NewReader(data))); err != nil || n != int64(size) {
			t.Fatalf("size %d: ReadFrom = %d, %v", size, n, err)
		}
		if b.Len() != int64(size) {
			t.Errorf("size %d: Len %d", size, b.Len())
		}
		if err := iotest.TestReader(b.Reader(), data); err != nil {
			t.Errorf("size %d: %v", size, err)
		}
		var out bytes.Buffer
		if _, err := b.Reader().WriteTo(&out); err != nil || !bytes.Equal(out.Bytes(), data) {
			t.Errorf("size %d: WriteTo wrote other bytes (%v)", size, err)
		}
	}
}

// BenchmarkReceive compares holding a DATA body in a Buffer with
// holding it in a bytes.Buffer, which copies itself as it grows.
func BenchmarkReceive(b *testing.B) {
	data := make([]byte, 10<<20)
	rand.Read(data)
	b.Run("Buffer", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			var m Buffer
			m.ReadFrom(chunked(data))
		}
	})
	b.Run("bytes.Buffer", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			var m bytes.Buffer
			m.ReadFrom(chunked(data))
		}
	})
}

// chunked reads data in 4 KiB pieces, as from a connection.
func chunked(data []byte) io.Reader {
	return io.LimitReader(&pieceReader{data: data}, int64(len(data)))
}

type pieceReader struct{ data []byte }

func (r *pieceReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 4096)], r.data)
	r.data = r.data[n:]
	return n, nil
}
