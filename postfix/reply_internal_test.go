package postfix

import (
	"bufio"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

func TestReadReply(t *testing.T) {
	for in, want := range map[string]smtp.SMTPError{
		"250 2.0.0 Ok\r\n":                        {Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Ok"},
		"550 5.1.1 <x@y>: unknown\r\n":            {Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "<x@y>: unknown"},
		"451-4.3.0 one\r\n451 4.3.0 two\r\n":      {Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "one\ntwo"},
		"250-host\r\n250-CHUNKING\r\n250 DSN\r\n": {Code: 250, EnhancedCode: smtp.NoEnhancedCode, Message: "host\nCHUNKING\nDSN"},
		"354 go on\n":                             {Code: 354, EnhancedCode: smtp.NoEnhancedCode, Message: "go on"},
		"554 4.0.0 class differs\r\n":             {Code: 554, EnhancedCode: smtp.NoEnhancedCode, Message: "4.0.0 class differs"},
		"250\r\n":                                 {Code: 250, EnhancedCode: smtp.NoEnhancedCode, Message: ""},
	} {
		got, err := readReply(bufio.NewReaderSize(strings.NewReader(in), maxReplyLine))
		if err != nil || *got != want {
			t.Errorf("%q: %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{
		"", "25\r\n", "abc ok\r\n", "250-a\r\n550 b\r\n", "250x\r\n", "600 no\r\n",
		"250 " + strings.Repeat("x", maxReplyLine) + "\r\n",
		strings.Repeat("250-x\r\n", maxReplyLines+1) + "250 x\r\n",
	} {
		if got, err := readReply(bufio.NewReaderSize(strings.NewReader(in), maxReplyLine)); err == nil {
			t.Errorf("%.40q: %+v, want an error", in, got)
		}
	}
}

func FuzzReadReply(f *testing.F) {
	f.Add([]byte("250-a\r\n250 2.0.0 b\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		readReply(bufio.NewReaderSize(strings.NewReader(string(in)), maxReplyLine))
	})
}
