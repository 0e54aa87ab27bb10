package main

import (
	"log"
	"net"
	"os"
)

// notify tells systemd the service's state, under a unit of Type=notify:
// one datagram to the socket in $NOTIFY_SOCKET. Without it, it does
// nothing.
func notify(logger *log.Logger, state string) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return
	}
	if path[0] == '@' {
		path = "\x00" + path[1:] // an abstract socket
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err == nil {
		_, err = conn.Write([]byte(state))
		conn.Close()
	}
	if err != nil {
		logger.Printf("Cannot notify systemd: %v", err)
	}
}
