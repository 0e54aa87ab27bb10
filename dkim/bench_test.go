package dkim_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	msgauth "github.com/emersion/go-msgauth/dkim"

	"filtermail/dkim"
)

// benchKey is the RSA-2048 key of the benchmarks' messages, signed by
// go-msgauth: signing is not what is measured.
var benchKey = sync.OnceValues(func() (*rsa.PrivateKey, string) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		panic(err)
	}
	return key, "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(pub)
})

// writeMessage writes a message of about size bytes: a header, then lines
// of base64 as in the ASCII-armored OpenPGP messages chatmail carries.
func writeMessage(w io.Writer, size int) {
	bw := bufio.NewWriter(w)
	fmt.Fprint(bw, "From: alice@example.org\r\nTo: bob@example.net\r\nSubject: [...]\r\n"+
		"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\nMessage-ID: <bench@example.org>\r\n"+
		"MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n\r\n")
	line := make([]byte, 57)
	enc := make([]byte, base64.StdEncoding.EncodedLen(len(line)))
	for i, written := 0, 0; written < size; i++ {
		for j := range line {
			line[j] = byte(i*31 + j*7)
		}
		base64.StdEncoding.Encode(enc, line)
		bw.Write(enc)
		bw.WriteString("\r\n")
		written += len(enc) + 2
	}
	bw.WriteString("-----END PGP MESSAGE-----\r\n")
	bw.Flush()
}

// signedMessage writes a message of about size bytes, signed with canon,
// to w, making it twice so that it is never held whole.
func signedMessage(tb testing.TB, w io.Writer, size int, canon msgauth.Canonicalization) {
	key, _ := benchKey()
	signer, err := msgauth.NewSigner(&msgauth.SignOptions{
		Domain: from, Selector: "bench", Signer: key,
		HeaderCanonicalization: canon, BodyCanonicalization: canon,
		HeaderKeys: []string{"From", "To", "Subject", "Date", "Message-ID"},
	})
	if err != nil {
		tb.Fatal(err)
	}
	writeMessage(signer, size)
	if err := signer.Close(); err != nil {
		tb.Fatal(err)
	}
	io.WriteString(w, signer.Signature())
	writeMessage(w, size)
}

func BenchmarkVerify(b *testing.B) {
	_, record := benchKey()
	v := dkim.New(dkim.Options{Resolver: mapResolver{"bench._domainkey." + from: record}})
	for _, size := range []struct {
		name  string
		bytes int
	}{{"1KB", 1 << 10}, {"1MB", 1 << 20}, {"30MB", 30 << 20}} {
		// The floor: hashing the same bytes once with SHA-256, as the
		// body hash must. Verify's figures read as a ratio to it.
		b.Run(size.name+"/sha256", func(b *testing.B) {
			var msg bytes.Buffer
			signedMessage(b, &msg, size.bytes, msgauth.CanonicalizationSimple)
			b.SetBytes(int64(msg.Len()))
			b.ReportAllocs()
			for b.Loop() {
				sha256.Sum256(msg.Bytes())
			}
		})
		for _, canon := range []msgauth.Canonicalization{msgauth.CanonicalizationRelaxed, msgauth.CanonicalizationSimple} {
			b.Run(size.name+"/"+string(canon), func(b *testing.B) {
				var msg bytes.Buffer
				signedMessage(b, &msg, size.bytes, canon)
				b.SetBytes(int64(msg.Len()))
				b.ReportAllocs()
				for b.Loop() {
					if res := v.Verify(context.Background(), bytes.NewReader(msg.Bytes()), from); res.Outcome != dkim.Pass {
						b.Fatalf("%v: %v", res.Outcome, res.Err)
					}
				}
			})
		}
	}
}

// memoryChild names the environment variable that makes TestVerifyMemory
// the child that verifies; it holds the message file.
const memoryChild = "FILTERMAIL_DKIM_MEMORY_FILE"

// TestVerifyMemory verifies a 30 MB message, read from a file, in a process
// of its own and reports how much memory that took: the peak resident set
// (VmHWM) before and after, and what the Go heap allocated. A verifier that
// held the message would need 30 MB more at its peak; this one streams.
//
//	go test -run '^TestVerifyMemory$' -v ./dkim
func TestVerifyMemory(t *testing.T) {
	if file := os.Getenv(memoryChild); file != "" {
		verifyMemoryChild(t, file)
		return
	}
	if testing.Short() {
		t.Skip("writes a 30 MB message")
	}
	t.Parallel()
	const size = 30 << 20
	file := filepath.Join(t.TempDir(), "message.eml")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	signedMessage(t, f, size, msgauth.CanonicalizationRelaxed)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	_, record := benchKey()
	cmd := exec.Command(os.Args[0], "-test.run=^TestVerifyMemory$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), memoryChild+"="+file, memoryChild+"_KEY="+record)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`VmHWM before (\d+) kB, after (\d+) kB; heap allocated (\d+) bytes in all, (\d+) in use at most`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("child printed %s", out)
	}
	before, _ := strconv.Atoi(string(m[1]))
	after, _ := strconv.Atoi(string(m[2]))
	maxRSS := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss
	t.Logf("verifying a %d-byte message: peak RSS %d kB before, %d kB after (+%d kB); max RSS of the process %d kB; heap allocated %s bytes in all, %s in use at most",
		size, before, after, after-before, maxRSS, m[3], m[4])
	// Holding the message would add 30 MB; streaming adds a few.
	if grew := after - before; grew > size/2/1024 {
		t.Errorf("peak RSS grew by %d kB verifying a %d kB message", grew, size/1024)
	}
}

func verifyMemoryChild(t *testing.T, file string) {
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v := dkim.New(dkim.Options{Resolver: mapResolver{"bench._domainkey." + from: os.Getenv(memoryChild + "_KEY")}})
	before := vmHWM(t)
	var heap peakHeap
	heap.start()
	res := v.Verify(context.Background(), struct{ io.Reader }{f}, from)
	total, peak := heap.stop()
	after := vmHWM(t)
	if res.Outcome != dkim.Pass {
		t.Fatalf("%v: %v", res.Outcome, res.Err)
	}
	fmt.Printf("VmHWM before %d kB, after %d kB; heap allocated %d bytes in all, %d in use at most\n", before, after, total, peak)
}

// vmHWM returns the peak resident set size of the process, in kB.
func vmHWM(t *testing.T) int {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^VmHWM:\s+(\d+) kB`).FindSubmatch(status)
	if m == nil {
		t.Fatalf("no VmHWM in /proc/self/status")
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// peakHeap samples the Go heap in use while a verification runs.
type peakHeap struct {
	stopc      chan struct{}
	done       chan uint64
	totalAlloc uint64
}

func (p *peakHeap) start() {
	p.stopc, p.done = make(chan struct{}), make(chan uint64)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	p.totalAlloc = ms.TotalAlloc
	go func() {
		var peak uint64
		ticker := time.NewTicker(time.Millisecond)
		defer ticker.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-p.stopc:
				p.done <- peak
				return
			case <-ticker.C:
			}
		}
	}()
}

// stop returns the bytes allocated since start and the most heap in use.
func (p *peakHeap) stop() (total, peak uint64) {
	close(p.stopc)
	peak = <-p.done
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.TotalAlloc - p.totalAlloc, peak
}
