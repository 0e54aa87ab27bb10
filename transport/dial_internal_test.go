package transport

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"filtermail/internal/testnet"
)

// An address that refuses the connection gives way to the next one at
// once; when every one refuses, all the errors are said.
func TestRace(t *testing.T) {
	up, down := testnet.Host(t), testnet.Host(t)
	ln, err := net.Listen("tcp", net.JoinHostPort(up, "25"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	ips := []netip.Addr{netip.MustParseAddr(down), netip.MustParseAddr(up)}
	c, err := race(context.Background(), ips, "25")
	if err != nil {
		t.Fatalf("with the second address up: %v", err)
	}
	if got := c.RemoteAddr().String(); got != net.JoinHostPort(up, "25") {
		t.Errorf("connected to %s, want %s", got, up)
	}
	c.Close()
	if _, err := race(context.Background(), ips[:1], "25"); err == nil {
		t.Error("connected to an address where nothing listens")
	}
	if _, err := race(context.Background(), nil, "25"); err == nil {
		t.Error("connected to no address")
	}
}
