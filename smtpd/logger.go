package smtpd

import (
	"fmt"
	"log"
	"regexp"
)

// ipAddress matches IPv4 and IPv6 addresses, with a port if one follows.
var ipAddress = regexp.MustCompile(`\[?\b(?:\d{1,3}\.){3}\d{1,3}\b\]?(?::\d+)?|\[?[0-9a-fA-F]{0,4}(?::[0-9a-fA-F]{0,4}){2,7}\]?(?::\d+)?`)

// PrivateLogger is a go-smtp server's error log. go-smtp names the
// client's address in its messages; this logger removes every IP address
// before writing to Log.
type PrivateLogger struct{ Log *log.Logger }

func (l PrivateLogger) Printf(format string, v ...any) {
	l.Log.Print(ipAddress.ReplaceAllString(fmt.Sprintf(format, v...), "[address]"))
}

func (l PrivateLogger) Println(v ...any) {
	l.Log.Print(ipAddress.ReplaceAllString(fmt.Sprintln(v...), "[address]"))
}
