package relaytest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// CA is a test certificate authority. Tests trust it by setting
// SSL_CERT_FILE to CertFile before anything loads the system roots, or
// through Pool.
type CA struct {
	CertFile string            // PEM of the CA certificate
	Pool     *x509.CertPool    // holding the CA certificate
	Cert     *x509.Certificate // the CA certificate (for DANE-TA records)

	key *ecdsa.PrivateKey
}

// NewCA makes a certificate authority with an ECDSA P-256 key, valid from an
// hour ago for ten years, and writes its certificate to dir/ca.pem.
func NewCA(dir string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("relaytest: CA key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	template := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "relaytest CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("relaytest: CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("relaytest: CA certificate: %w", err)
	}
	file := filepath.Join(dir, "ca.pem")
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(file, data, 0o644); err != nil {
		return nil, fmt.Errorf("relaytest: CA certificate: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{CertFile: file, Pool: pool, Cert: cert, key: key}, nil
}

// Certificate issues a certificate for names, valid from an hour ago for a
// day. A name is a DNS name or an IP address (then an IP SAN); the first is
// also the CommonName.
func (ca *CA) Certificate(names ...string) (tls.Certificate, error) {
	now := time.Now()
	return leaf(names, now.Add(-time.Hour), now.Add(24*time.Hour), ca.Cert, ca.key)
}

// Expired issues a certificate for names that expired yesterday.
func (ca *CA) Expired(names ...string) (tls.Certificate, error) {
	now := time.Now()
	return leaf(names, now.Add(-48*time.Hour), now.Add(-24*time.Hour), ca.Cert, ca.key)
}

// SelfSigned makes a self-signed certificate for names, valid from an hour
// ago for a day, that no authority vouches for.
func SelfSigned(names ...string) (tls.Certificate, error) {
	now := time.Now()
	return leaf(names, now.Add(-time.Hour), now.Add(24*time.Hour), nil, nil)
}

// leaf makes a server certificate for names with a new key, signed by
// parent with parentKey, or by itself if parent is nil. The chain holds
// the leaf and the parent.
func leaf(names []string, notBefore, notAfter time.Time, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (tls.Certificate, error) {
	if len(names) == 0 {
		return tls.Certificate{}, errors.New("relaytest: a certificate needs a name")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("relaytest: key for %s: %w", names[0], err)
	}
	serial, err := serialNumber()
	if err != nil {
		return tls.Certificate{}, err
	}
	template := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: names[0]},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, name := range names {
		if ip := net.ParseIP(name); ip != nil {
			template.IPAddresses = append(template.IPAddresses, ip)
		} else {
			template.DNSNames = append(template.DNSNames, name)
		}
	}
	chain := [][]byte{nil}
	if parent == nil {
		parent, parentKey = template, key
	} else {
		// The CA's certificate goes with the leaf, as a server sends its
		// chain: a DANE-TA record names it.
		chain = append(chain, parent.Raw)
	}
	der, err := x509.CreateCertificate(rand.Reader, template, parent, &key.PublicKey, parentKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("relaytest: certificate for %s: %w", names[0], err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("relaytest: certificate for %s: %w", names[0], err)
	}
	chain[0] = der
	return tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: cert}, nil
}

// serialNumber returns a random 128-bit certificate serial number.
func serialNumber() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("relaytest: serial number: %w", err)
	}
	return n, nil
}
