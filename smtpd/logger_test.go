package smtpd

import (
	"bytes"
	"log"
	"testing"
)

func TestPrivateLogger(t *testing.T) {
	var buf bytes.Buffer
	l := PrivateLogger{log.New(&buf, "", 0)}
	l.Printf("error handling %v: read tcp %s->%s: reset", "192.0.2.7:4711", "127.0.0.1:10080", "[2001:db8::1]:5555")
	l.Println("from", "2001:db8:0:1::42", "and 198.51.100.200")
	want := "error handling [address]: read tcp [address]->[address]: reset\nfrom [address] and [address]\n"
	if buf.String() != want {
		t.Errorf("logged %q\nwant   %q", buf.String(), want)
	}
}
