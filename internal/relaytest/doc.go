// Package relaytest runs fake remote relays for tests of delivery to other
// relays: an HTTPS endpoint for POST /mxdeliv on port 443 and an SMTP server
// on port 25, each on a loopback host of the test's own (see
// filtermail/internal/testnet), and a certificate authority whose
// certificates they present.
//
// The relays record what they receive and can misbehave on purpose: answer
// with any reply, refuse single recipients, never answer, never greet,
// never finish a TLS handshake. They stop when the test ends, with every
// connection closed and every goroutine ended.
package relaytest
