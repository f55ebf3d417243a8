// Package encryption owns what k1s decides about encrypting Secrets at rest, without linking
// Kubernetes: the apiserver's EncryptionConfiguration k1s writes (its keys, the first one
// writing), what a value stored in etcd says of the key it was written with, what a starting
// server does with both, and the lock that keeps two changes of the configuration apart.
package encryption

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/k1s-io/k1s/internal/fileutil"
)

// Provider is an apiserver encryption provider k1s generates keys for.
type Provider string

const (
	// Secretbox (XSalsa20-Poly1305) is authenticated encryption: the default for new keys.
	Secretbox Provider = "secretbox"
	// AESCBC is what earlier k1s versions wrote; kept for clusters that have it.
	AESCBC Provider = "aescbc"
	// DefaultProvider is the provider of a new configuration.
	DefaultProvider = Secretbox
)

// ParseProvider checks a provider named by flag (e.g. "--secrets-encryption-provider").
func ParseProvider(flag, name string) (Provider, error) {
	switch p := Provider(name); p {
	case Secretbox, AESCBC:
		return p, nil
	}
	return "", fmt.Errorf("%s %q is not a provider k1s generates keys for: use secretbox or aescbc", flag, name)
}

// Key is one encryption key.
type Key struct {
	Provider Provider
	// Name is unique among the configuration's keys; etcd values name it.
	Name string
	// Secret is the key, base64 (32 bytes for both providers).
	Secret string
}

// Prefix is how the etcd value of an object written with k begins.
func (k Key) Prefix() string {
	return "k8s:enc:" + string(k.Provider) + ":v1:" + k.Name + ":"
}

// String names the key with its provider, as status and errors show it.
func (k Key) String() string { return string(k.Provider) + "/" + k.Name }

// Config is the encryption configuration of Secrets: Keys in order, the first one writing,
// every one reading; identity always follows them, so that Secrets stored before encryption
// was turned on stay readable until they are rewritten.
type Config struct {
	Keys []Key
}

// Active is the key new Secrets are written with.
func (c Config) Active() Key {
	if len(c.Keys) == 0 {
		return Key{}
	}
	return c.Keys[0]
}

// Has reports whether the configuration reads values written with provider's key name.
func (c Config) Has(provider Provider, name string) bool {
	for _, k := range c.Keys {
		if k.Provider == provider && k.Name == name {
			return true
		}
	}
	return false
}

// NewConfig is a configuration with one new key of provider.
func NewConfig(provider Provider) (Config, error) {
	key, err := newKey(provider, nil, time.Now())
	if err != nil {
		return Config{}, err
	}
	return Config{Keys: []Key{key}}, nil
}

// Rotated is c with a new key of provider (c's active provider when empty) first: the
// apiserver then writes with it and still reads everything c reads.
func (c Config) Rotated(provider Provider) (Config, Key, error) {
	if provider == "" {
		provider = c.Active().Provider
	}
	key, err := newKey(provider, c.Keys, time.Now())
	if err != nil {
		return c, key, err
	}
	return Config{Keys: append([]Key{key}, c.Keys...)}, key, nil
}

// newKey generates a key named by provider and time, unique among existing: two keys of one
// name would make the values of one of them unreadable.
func newKey(provider Provider, existing []Key, now time.Time) (Key, error) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return Key{}, fmt.Errorf("generating an encryption key: %w", err)
	}
	base := string(provider) + "key-" + now.UTC().Format("2006-01-02T15-04-05Z")
	name := base
	for i := 2; (Config{Keys: existing}).Has(provider, name); i++ {
		name = fmt.Sprintf("%s-%d", base, i)
	}
	return Key{Provider: provider, Name: name, Secret: base64.StdEncoding.EncodeToString(secret)}, nil
}

// The EncryptionConfiguration's JSON (apiserver.config.k8s.io/v1), as much of it as k1s writes.
type fileConfig struct {
	Kind       string         `json:"kind"`
	APIVersion string         `json:"apiVersion"`
	Resources  []fileResource `json:"resources"`
}

type fileResource struct {
	Resources []string       `json:"resources"`
	Providers []fileProvider `json:"providers"`
}

type fileProvider struct {
	AESCBC    *fileKeys `json:"aescbc,omitempty"`
	Secretbox *fileKeys `json:"secretbox,omitempty"`
	Identity  *struct{} `json:"identity,omitempty"`
}

type fileKeys struct {
	Keys []fileKey `json:"keys"`
}

type fileKey struct {
	Name   string `json:"name"`
	Secret string `json:"secret"`
}

// Read reads the configuration at path; exists is false (and the error nil) when there is no
// file. Providers other than k1s's are an error: k1s would drop their keys when it rewrites
// the file.
func Read(path string) (c Config, exists bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Config{}, false, nil
	}
	if err != nil {
		return Config{}, true, fmt.Errorf("reading the secrets encryption configuration: %w", err)
	}
	c, err = parse(data)
	if err != nil {
		return Config{}, true, fmt.Errorf("%s: %w: restore it from a backup", path, err)
	}
	return c, true, nil
}

func parse(data []byte) (Config, error) {
	// Unknown fields are refused: a provider k1s does not know (kms, aesgcm) would be lost.
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	var f fileConfig
	if err := dec.Decode(&f); err != nil {
		return Config{}, fmt.Errorf("not an encryption configuration k1s wrote (%w)", err)
	}
	if len(f.Resources) != 1 || strings.Join(f.Resources[0].Resources, ",") != "secrets" {
		return Config{}, errors.New("not an encryption configuration of Secrets alone, as k1s writes")
	}
	var c Config
	for _, p := range f.Resources[0].Providers {
		var provider Provider
		var keys *fileKeys
		switch {
		case p.AESCBC != nil:
			provider, keys = AESCBC, p.AESCBC
		case p.Secretbox != nil:
			provider, keys = Secretbox, p.Secretbox
		default:
			continue // identity
		}
		for _, k := range keys.Keys {
			c.Keys = append(c.Keys, Key{Provider: provider, Name: k.Name, Secret: k.Secret})
		}
	}
	if len(c.Keys) == 0 {
		return Config{}, errors.New("no key")
	}
	return c, nil
}

// Write writes c to path (0600, atomically).
func Write(path string, c Config) error {
	if len(c.Keys) == 0 {
		return errors.New("an encryption configuration needs a key")
	}
	data, err := c.marshal()
	if err != nil {
		return err
	}
	return fileutil.WriteAtomic(path, data, 0o600)
}

// marshal groups consecutive keys of one provider into one provider entry, keeping their
// order, and puts identity last.
func (c Config) marshal() ([]byte, error) {
	var providers []fileProvider
	for i, k := range c.Keys {
		if i == 0 || c.Keys[i-1].Provider != k.Provider {
			var p fileProvider
			switch k.Provider {
			case AESCBC:
				p.AESCBC = &fileKeys{}
			case Secretbox:
				p.Secretbox = &fileKeys{}
			default:
				return nil, fmt.Errorf("key %s: unknown provider", k)
			}
			providers = append(providers, p)
		}
		last := &providers[len(providers)-1]
		keys := last.AESCBC
		if keys == nil {
			keys = last.Secretbox
		}
		keys.Keys = append(keys.Keys, fileKey{Name: k.Name, Secret: k.Secret})
	}
	providers = append(providers, fileProvider{Identity: &struct{}{}})
	data, err := json.MarshalIndent(fileConfig{
		Kind:       "EncryptionConfiguration",
		APIVersion: "apiserver.config.k8s.io/v1",
		Resources:  []fileResource{{Resources: []string{"secrets"}, Providers: providers}},
	}, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}
