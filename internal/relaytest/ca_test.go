package relaytest

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"testing"
)

// verify verifies cert against pool for name.
func verify(cert tls.Certificate, pool *x509.CertPool, name string) error {
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return err
	}
	_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: name})
	return err
}

func TestCertificates(t *testing.T) {
	dns := certificate(t, "mx.relay.example", "relay.example")
	for _, name := range []string{"mx.relay.example", "relay.example"} {
		if err := verify(dns, ca.Pool, name); err != nil {
			t.Errorf("certificate for %s: %v", name, err)
		}
	}
	if err := verify(dns, ca.Pool, "other.example"); err == nil {
		t.Error("certificate for mx.relay.example verifies for other.example")
	}
	if cn := dns.Leaf.Subject.CommonName; cn != "mx.relay.example" {
		t.Errorf("CommonName %q, want mx.relay.example", cn)
	}
	ip := certificate(t, "127.0.1.9")
	if err := verify(ip, ca.Pool, "127.0.1.9"); err != nil {
		t.Errorf("certificate for an IP address: %v", err)
	}
	if len(ip.Leaf.IPAddresses) != 1 || len(ip.Leaf.DNSNames) != 0 {
		t.Errorf("certificate for an IP address: IP SANs %v, DNS SANs %v", ip.Leaf.IPAddresses, ip.Leaf.DNSNames)
	}

	expired, err := ca.Expired("mx.relay.example")
	if err != nil {
		t.Fatal(err)
	}
	var invalid x509.CertificateInvalidError
	if err := verify(expired, ca.Pool, "mx.relay.example"); !errors.As(err, &invalid) || invalid.Reason != x509.Expired {
		t.Errorf("expired certificate: %v, want it expired", err)
	}
	self, err := SelfSigned("mx.relay.example")
	if err != nil {
		t.Fatal(err)
	}
	var unknown x509.UnknownAuthorityError
	if err := verify(self, ca.Pool, "mx.relay.example"); !errors.As(err, &unknown) {
		t.Errorf("self-signed certificate: %v, want an unknown authority", err)
	}

	if _, err := ca.Certificate(); err == nil {
		t.Error("a certificate without a name")
	}
	pem, err := os.ReadFile(ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	if pool := x509.NewCertPool(); !pool.AppendCertsFromPEM(pem) || verify(dns, pool, "relay.example") != nil {
		t.Errorf("%s does not hold the CA certificate", ca.CertFile)
	}
}
