package pki

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/util/keyutil"

	"github.com/k1s-io/k1s/internal/fileutil"
)

// ServiceAccountKeys are the files of service-account token signing.
type ServiceAccountKeys struct {
	// SigningKey signs new tokens.
	SigningKey string
	// VerifyKeys holds the public keys tokens are verified with: the signing key's, and those
	// of retired keys until every token they signed has expired.
	VerifyKeys string
	// RetiredDir holds retired public keys, each named <unix>.pub by the time it may go.
	RetiredDir string
}

// EnsureServiceAccountKeys creates the signing key when missing; with rotate, it retires the
// current key (its public half is kept for retention, the longest a token it signed can still
// be valid) and creates a new one. It drops retired keys whose time has passed and writes the
// verification file. It reports whether it rotated.
func EnsureServiceAccountKeys(k ServiceAccountKeys, rotate bool, retention time.Duration, now time.Time) (bool, error) {
	rotated := false
	if rotate {
		if _, err := os.Stat(k.SigningKey); err == nil {
			pub, err := publicKeyPEM(k.SigningKey)
			if err != nil {
				return false, err
			}
			if err := os.MkdirAll(k.RetiredDir, 0o700); err != nil {
				return false, err
			}
			until := now.Add(retention).Unix()
			if err := fileutil.WriteAtomic(filepath.Join(k.RetiredDir, strconv.FormatInt(until, 10)+".pub"), pub, 0o600); err != nil {
				return false, err
			}
			if err := os.Remove(k.SigningKey); err != nil {
				return false, err
			}
			rotated = true
		}
	}
	if err := EnsureKey(k.SigningKey, "existing service-account tokens stop working"); err != nil {
		return false, err
	}
	current, err := publicKeyPEM(k.SigningKey)
	if err != nil {
		return false, err
	}
	retired, err := keepRetired(k.RetiredDir, now)
	if err != nil {
		return false, err
	}
	verify := slices.Concat(append([][]byte{current}, retired...)...)
	if old, err := os.ReadFile(k.VerifyKeys); err == nil && string(old) == string(verify) {
		return rotated, nil
	}
	return rotated, fileutil.WriteAtomic(k.VerifyKeys, verify, 0o600)
}

// keepRetired returns the retired public keys that may still verify tokens, newest first,
// and removes the others.
func keepRetired(dir string, now time.Time) ([][]byte, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for i := len(entries) - 1; i >= 0; i-- {
		name := entries[i].Name()
		until, err := strconv.ParseInt(strings.TrimSuffix(name, ".pub"), 10, 64)
		if err != nil || !strings.HasSuffix(name, ".pub") {
			continue // not k1s's
		}
		path := filepath.Join(dir, name)
		if now.Unix() > until {
			if err := os.Remove(path); err != nil {
				return nil, err
			}
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		out = append(out, data)
	}
	return out, nil
}

// publicKeyPEM is the PEM public key of the private key at path.
func publicKeyPEM(path string) ([]byte, error) {
	key, err := keyutil.PrivateKeyFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the service-account key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s holds no signing key", path)
	}
	der, err := x509.MarshalPKIXPublicKey(signer.Public())
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}
