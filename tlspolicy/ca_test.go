package tlspolicy_test

import (
	"crypto/tls"
	"crypto/x509"
	"testing"

	"filtermail/internal/relaytest"
)

// testCA is a certificate authority made for one test.
type testCA struct{ ca *relaytest.CA }

func newCA(t testing.TB) *testCA {
	t.Helper()
	ca, err := relaytest.NewCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{ca}
}

// pool trusts the CA alone.
func (ca *testCA) pool() *x509.CertPool { return ca.ca.Pool }

// issue makes a leaf for names, valid now.
func (ca *testCA) issue(names ...string) (tls.Certificate, error) { return ca.ca.Certificate(names...) }

func (ca *testCA) mustIssue(t testing.TB, names ...string) tls.Certificate {
	t.Helper()
	c, err := ca.issue(names...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
