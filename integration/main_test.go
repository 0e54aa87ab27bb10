// Package integration tests filtermail as a relay runs it: the built
// binary, real Chromium for the pages, and (in later tests) Postfix and
// OpenPGP tools.
package integration

import (
	"fmt"
	"os"
	"testing"

	"filtermail/internal/daemontest"
)

// binary is the filtermail binary under test, built once by TestMain.
var binary string

func TestMain(m *testing.M) {
	bin, cleanup, err := daemontest.Build()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = bin
	code := m.Run()
	cleanup()
	os.Exit(code)
}
