// Package bootstrapdata is what a joining server needs of its cluster — the CAs with their
// keys, the service-account keys, the secrets-encryption configuration — sealed with a key
// derived from the server token's secret. The sealed bundle is kept in the cluster (a Secret
// that only the server token's group may read), so that neither an etcd snapshot nor an
// agent token reveals a CA key.
package bootstrapdata

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"golang.org/x/crypto/scrypt"

	"github.com/k1s-io/k1s/internal/fileutil"
)

// magic starts every sealed bundle; it names the format and is authenticated with it.
var magic = []byte("k1s-bootstrap-v1:")

// scrypt's parameters: the token's secret is 16 random characters (about 82 bits), and a
// slow KDF puts an offline guess of it out of reach. N=2^15 costs ~32 MB and tens of
// milliseconds, once per join.
const (
	saltSize = 16
	scryptN  = 1 << 15
	scryptR  = 8
	scryptP  = 1
	keySize  = 32
)

// Bundle is a set of files, by their path relative to the server's directory.
type Bundle struct {
	Files map[string][]byte `json:"files"`
}

// Collect reads the files rel (relative to root) that exist, and every file in the
// directories dirs (relative to root) that exist.
func Collect(root string, rel, dirs []string) (Bundle, error) {
	b := Bundle{Files: map[string][]byte{}}
	add := func(name string) error {
		data, err := os.ReadFile(filepath.Join(root, name))
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading the bootstrap data: %w", err)
		}
		b.Files[name] = data
		return nil
	}
	for _, name := range rel {
		if err := add(name); err != nil {
			return b, err
		}
	}
	for _, dir := range dirs {
		entries, err := os.ReadDir(filepath.Join(root, dir))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return b, fmt.Errorf("reading the bootstrap data: %w", err)
		}
		for _, e := range entries {
			if e.Type().IsRegular() {
				if err := add(filepath.Join(dir, e.Name())); err != nil {
					return b, err
				}
			}
		}
	}
	return b, nil
}

// Names are the bundle's file names, sorted.
func (b Bundle) Names() []string {
	names := make([]string, 0, len(b.Files))
	for name := range b.Files {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// Equal reports whether two bundles hold the same files.
func (b Bundle) Equal(o Bundle) bool {
	if len(b.Files) != len(o.Files) {
		return false
	}
	for name, data := range b.Files {
		if other, ok := o.Files[name]; !ok || !bytes.Equal(data, other) {
			return false
		}
	}
	return true
}

// WriteTo writes the bundle's files under root (owner-only), refusing a name that would
// leave root.
func (b Bundle) WriteTo(root string) error {
	for _, name := range b.Names() {
		if !filepath.IsLocal(name) {
			return fmt.Errorf("the bootstrap data names %q, outside the server's directory", name)
		}
		path := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return err
		}
		if err := fileutil.WriteAtomic(path, b.Files[name], 0o600); err != nil {
			return err
		}
	}
	return nil
}

// ErrWrongSecret is Open's error for a bundle sealed with another secret (or altered).
var ErrWrongSecret = errors.New("the bootstrap data does not open with this token's secret")

// Seal encrypts the bundle with a key derived from secret: magic | salt | nonce | AES-256-GCM.
func Seal(b Bundle, secret string) ([]byte, error) {
	plain, err := json.Marshal(b)
	if err != nil {
		return nil, err
	}
	salt := make([]byte, saltSize)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	aead, err := newAEAD(secret, salt)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	out := append(append(append([]byte{}, magic...), salt...), nonce...)
	return aead.Seal(out, nonce, plain, magic), nil
}

// Open decrypts what Seal made with the same secret.
func Open(sealed []byte, secret string) (Bundle, error) {
	var b Bundle
	if !bytes.HasPrefix(sealed, magic) {
		return b, errors.New("the bootstrap data is not in k1s's format")
	}
	rest := sealed[len(magic):]
	if len(rest) < saltSize {
		return b, errors.New("the bootstrap data is truncated")
	}
	aead, err := newAEAD(secret, rest[:saltSize])
	if err != nil {
		return b, err
	}
	rest = rest[saltSize:]
	if len(rest) < aead.NonceSize()+aead.Overhead() {
		return b, errors.New("the bootstrap data is truncated")
	}
	plain, err := aead.Open(nil, rest[:aead.NonceSize()], rest[aead.NonceSize():], magic)
	if err != nil {
		return b, ErrWrongSecret
	}
	if err := json.Unmarshal(plain, &b); err != nil {
		return b, fmt.Errorf("the bootstrap data is malformed: %w", err)
	}
	return b, nil
}

func newAEAD(secret string, salt []byte) (cipher.AEAD, error) {
	key, err := scrypt.Key([]byte(secret), salt, scryptN, scryptR, scryptP, keySize)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}
