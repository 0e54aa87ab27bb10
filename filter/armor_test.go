package filter

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"filtermail/filter/filtertest"
)

// readArmor reads the data of armored text with the source and the
// caller's reads shaped by wrap, and says how it ended.
func readArmor(text []byte, source, reads func(io.Reader) io.Reader) ([]byte, string) {
	data, err := io.ReadAll(reads(newArmorReader(source(bytes.NewReader(text)))))
	return data, fmt.Sprint(err)
}

func same(r io.Reader) io.Reader { return r }

// The armor's data reads the same whether whole lines are decoded straight
// from the buffer or every line goes on its own (a source that brings a
// byte at a time, or a caller that takes one): the same bytes, and the
// same error after them.
func FuzzArmorReader(f *testing.F) {
	v6 := filtertest.GoCryptoV6(f, bytes.Repeat([]byte("fuzz "), 60))
	crlf := strings.ReplaceAll(v6, "\n", "\r\n")
	f.Add([]byte(v6))
	f.Add([]byte(crlf))
	f.Add([]byte(strings.ReplaceAll(v6, "\n", " \t\n")))             // trailing spaces
	f.Add([]byte(strings.Replace(crlf, "\r\n", "\r\n\r\n", 5)))      // blank lines
	f.Add([]byte(strings.ReplaceAll(v6, "\n", "\n\n")[2:]))          // blank lines everywhere
	f.Add([]byte(strings.Replace(v6, "A", "!", 1)))                  // a bad character
	f.Add([]byte(strings.Replace(v6, "\n", "\nComment: x\n", 1)))    // an armor header
	f.Add([]byte(filtertest.Armor(f, bytes.Repeat([]byte{7}, 10))))  // padding
	f.Add([]byte(filtertest.Armor(f, bytes.Repeat([]byte{7}, 200)))) // more padding
	// Lines of other lengths, one overlong.
	begin, rest, _ := strings.Cut(v6, "\n\n")
	body, end, _ := strings.Cut(rest, "\n=")
	joined := strings.ReplaceAll(body, "\n", "")
	for _, width := range []int{3, 66, 75} {
		var b strings.Builder
		for s := joined; s != ""; s = s[min(width, len(s)):] {
			b.WriteString(s[:min(width, len(s))] + "\n")
		}
		f.Add([]byte(begin + "\n\n" + b.String() + "=" + end))
	}
	f.Add([]byte(armorBegin + "\n\n" + strings.Repeat("A", armorBuffer+10) + "\n" + armorEnd + "\n")) // overlong
	f.Fuzz(func(t *testing.T, text []byte) {
		want, wantErr := readArmor(text, same, same)
		for name, shape := range map[string][2]func(io.Reader) io.Reader{
			"a byte at a time from the source": {iotest.OneByteReader, same},
			"a byte at a time to the caller":   {same, iotest.OneByteReader},
			"half the reads short":             {iotest.HalfReader, iotest.HalfReader},
		} {
			got, gotErr := readArmor(text, shape[0], shape[1])
			if !bytes.Equal(got, want) || gotErr != wantErr {
				t.Fatalf("%s: %d bytes, %s; read whole: %d bytes, %s", name, len(got), gotErr, len(want), wantErr)
			}
		}
	})
}
