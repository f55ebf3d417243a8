// Package pki creates and keeps the certificate authorities, certificates and kubeconfigs of a
// k1s cluster. Everything is generated once and reused; a certificate is issued again only when
// it no longer fits (a name or address was added, it is close to expiry, or its CA changed).
package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	certutil "k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"

	"github.com/k1s-io/k1s/internal/fileutil"
	"github.com/k1s-io/k1s/internal/layout"
)

const (
	leafValidity = 365 * 24 * time.Hour
	// RenewBefore is how close to expiry a leaf certificate is issued again (at start and
	// while k1s runs), and a certificate k1s does not renew (a CA) is warned about.
	RenewBefore = 90 * 24 * time.Hour
)

// CertMode is the mode of certificates on disk: owner-only like keys (CIS 1.1.20, 4.1.7);
// only root reads them.
const CertMode os.FileMode = 0o600

// CA is a certificate authority whose key is on disk.
type CA struct {
	Cert     *x509.Certificate
	Key      crypto.Signer
	CertFile string
	KeyFile  string
}

// Pair names a certificate and its key on disk.
type Pair struct {
	CertFile string
	KeyFile  string
}

// CertSpec describes a leaf certificate.
type CertSpec struct {
	CommonName   string
	Organization []string
	DNSNames     []string
	IPs          []net.IP
	Server       bool
	Client       bool
}

// EnsureCA loads the CA stored in files, or creates it; name is how errors call it.
func EnsureCA(files layout.Pair, name, commonName string) (*CA, error) {
	ca := &CA{CertFile: files.Cert, KeyFile: files.Key}
	cert, key, err := loadPair(ca.CertFile, ca.KeyFile)
	if err == nil {
		ca.Cert, ca.Key = cert, key
		return ca, os.Chmod(ca.CertFile, CertMode) // written 0644 by earlier versions
	}
	// A new CA only when neither half exists: replacing a CA whose key alone went missing
	// would silently invalidate every credential it issued.
	_, certErr := os.Stat(ca.CertFile)
	_, keyErr := os.Stat(ca.KeyFile)
	if !errors.Is(certErr, fs.ErrNotExist) || !errors.Is(keyErr, fs.ErrNotExist) {
		return nil, fmt.Errorf("CA %s is unreadable (%w); restore it from a backup or remove %s and its key to create a new cluster CA", name, err, ca.CertFile)
	}
	key, err = newKey()
	if err != nil {
		return nil, err
	}
	cert, err = certutil.NewSelfSignedCACert(certutil.Config{CommonName: fmt.Sprintf("%s@%d", commonName, time.Now().Unix())}, key)
	if err != nil {
		return nil, fmt.Errorf("creating CA %s: %w", name, err)
	}
	if err := writePair(ca.CertFile, ca.KeyFile, cert.Raw, key); err != nil {
		return nil, err
	}
	ca.Cert, ca.Key = cert, key
	return ca, nil
}

// Ensure loads the certificate stored in files, and issues it again
// (keeping the key) when it does not verify against ca, lacks a name or address of spec, or
// expires soon; with rotate, it issues it again with a new key whatever it holds. It reports
// whether it wrote a new certificate.
func (ca *CA) Ensure(files layout.Pair, spec CertSpec, rotate bool) (Pair, bool, error) {
	pair := pairOf(files)
	cert, key, err := loadPair(pair.CertFile, pair.KeyFile)
	switch {
	case err == nil && rotate:
		key = nil
	case err == nil:
		if ca.fits(cert, spec) {
			return pair, false, os.Chmod(pair.CertFile, CertMode) // written 0644 by earlier versions
		}
	case errors.Is(err, fs.ErrNotExist):
		key = nil
	default:
		// A damaged leaf is reissued: it holds nothing that cannot be made again.
		key = nil
	}
	if key == nil {
		if key, err = newKey(); err != nil {
			return pair, false, err
		}
	}
	der, err := ca.sign(key.Public(), spec)
	if err != nil {
		return pair, false, fmt.Errorf("issuing certificate %s: %w", pair.CertFile, err)
	}
	if err := writePair(pair.CertFile, pair.KeyFile, der, key); err != nil {
		return pair, false, err
	}
	return pair, true, nil
}

// fits reports whether cert was issued by ca for at least everything spec asks, and is not
// about to expire.
func (ca *CA) fits(cert *x509.Certificate, spec CertSpec) bool {
	if cert.CheckSignatureFrom(ca.Cert) != nil {
		return false
	}
	if time.Until(cert.NotAfter) < RenewBefore {
		return false
	}
	if cert.Subject.CommonName != spec.CommonName || !slices.Equal(cert.Subject.Organization, spec.Organization) {
		return false
	}
	for _, name := range spec.DNSNames {
		if !slices.Contains(cert.DNSNames, name) {
			return false
		}
	}
	for _, ip := range spec.IPs {
		if !slices.ContainsFunc(cert.IPAddresses, ip.Equal) {
			return false
		}
	}
	return true
}

func (ca *CA) sign(pub crypto.PublicKey, spec CertSpec) ([]byte, error) {
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: spec.CommonName, Organization: spec.Organization},
		DNSNames:     spec.DNSNames,
		IPAddresses:  spec.IPs,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(leafValidity),
		KeyUsage:     x509.KeyUsageKeyEncipherment | x509.KeyUsageDigitalSignature,
	}
	if spec.Server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if spec.Client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	return x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
}

// Expiry is a certificate on disk and when it expires.
type Expiry struct {
	File     string
	Subject  string
	NotAfter time.Time
}

// ExpiringWithin lists the certificates (*.crt) below dir that expire within d.
func ExpiringWithin(dir string, d time.Duration) ([]Expiry, error) {
	var out []Expiry
	err := filepath.WalkDir(dir, func(path string, entry fs.DirEntry, err error) error {
		if err != nil || entry.IsDir() || filepath.Ext(path) != ".crt" {
			return err
		}
		certs, err := certutil.CertsFromFile(path)
		if err != nil {
			return fmt.Errorf("reading certificate %s: %w", path, err)
		}
		if time.Until(certs[0].NotAfter) < d {
			out = append(out, Expiry{File: path, Subject: certs[0].Subject.CommonName, NotAfter: certs[0].NotAfter})
		}
		return nil
	})
	return out, err
}

// EnsureKey loads the private key at path, or creates it; lost says what removing an
// unreadable key costs (in the error that suggests it).
func EnsureKey(path, lost string) error {
	if _, err := keyutil.PrivateKeyFromFile(path); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		if _, statErr := os.Stat(path); statErr == nil {
			return fmt.Errorf("key %s is unreadable (%w); restore it from a backup, or remove it to create a new one (%s)", path, err, lost)
		}
	}
	key, err := newKey()
	if err != nil {
		return err
	}
	pemKey, err := keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return err
	}
	return fileutil.WriteAtomic(path, pemKey, 0o600)
}

func newKey() (crypto.Signer, error) {
	// ECDSA P-256: fast to generate (cold start), small, and accepted by every component,
	// including service-account token signing (ES256).
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating key: %w", err)
	}
	return key, nil
}

func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generating serial number: %w", err)
	}
	return serial, nil
}

func loadPair(certFile, keyFile string) (*x509.Certificate, crypto.Signer, error) {
	certs, err := certutil.CertsFromFile(certFile)
	if err != nil {
		return nil, nil, err
	}
	key, err := keyutil.PrivateKeyFromFile(keyFile)
	if err != nil {
		return nil, nil, err
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("%s holds no signing key", keyFile)
	}
	if !publicKeysEqual(certs[0].PublicKey, signer.Public()) {
		return nil, nil, fmt.Errorf("%s does not belong to %s", keyFile, certFile)
	}
	return certs[0], signer, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ka, errA := x509.MarshalPKIXPublicKey(a)
	kb, errB := x509.MarshalPKIXPublicKey(b)
	return errA == nil && errB == nil && bytes.Equal(ka, kb)
}

// writePair writes the key first: a certificate on disk always has its key beside it.
func writePair(certFile, keyFile string, certDER []byte, key crypto.Signer) error {
	pemKey, err := keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return err
	}
	if err := fileutil.WriteAtomic(keyFile, pemKey, 0o600); err != nil {
		return err
	}
	pemCert, err := certutil.EncodeCertificates(&x509.Certificate{Raw: certDER})
	if err != nil {
		return err
	}
	return fileutil.WriteAtomic(certFile, pemCert, CertMode)
}
