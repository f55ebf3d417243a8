package encryption

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
)

// encPrefix begins every value the apiserver stores encrypted ("k8s:enc:<provider>:<version>:
// <key name>:<ciphertext>"); a value without it is stored in the clear.
const encPrefix = "k8s:enc:"

// Stored is what a value in etcd says of how it was written: the provider and key name,
// both empty for a value in the clear.
type Stored struct {
	Provider Provider
	Key      string
}

// ParseStored reads how value was written.
func ParseStored(value []byte) Stored {
	rest, ok := bytes.CutPrefix(value, []byte(encPrefix))
	if !ok {
		return Stored{}
	}
	// <provider>:<version>:<key name>: (kms v2 names no key the same way; its name is what
	// the third field holds, which is all k1s needs to tell that it cannot read it).
	parts := bytes.SplitN(rest, []byte(":"), 4)
	if len(parts) < 4 {
		return Stored{Provider: Provider(parts[0]), Key: "?"}
	}
	return Stored{Provider: Provider(parts[0]), Key: string(parts[2])}
}

// Encrypted reports whether the value was stored encrypted.
func (s Stored) Encrypted() bool { return s.Provider != "" }

func (s Stored) String() string {
	if !s.Encrypted() {
		return "in the clear"
	}
	return string(s.Provider) + "/" + s.Key
}

// Survey counts how the Secrets in etcd are stored.
type Survey struct {
	// Secrets is how many there are.
	Secrets int
	// By counts them by how they are stored.
	By map[Stored]int
}

// Add counts one Secret's stored value.
func (s *Survey) Add(value []byte) {
	if s.By == nil {
		s.By = map[Stored]int{}
	}
	s.Secrets++
	s.By[ParseStored(value)]++
}

// Encrypted is how many Secrets are stored encrypted.
func (s Survey) Encrypted() int { return s.Secrets - s.By[Stored{}] }

// NotWith is how many Secrets are stored other than with key: those a rewrite would change.
func (s Survey) NotWith(key Key) int {
	return s.Secrets - s.By[Stored{Provider: key.Provider, Key: key.Name}]
}

// unreadable lists how Secrets are stored that c cannot read, with their counts.
func (s Survey) unreadable(c Config) []string {
	var out []string
	for st, n := range s.By {
		if st.Encrypted() && !c.Has(st.Provider, st.Key) {
			out = append(out, fmt.Sprintf("%d with key %s", n, st))
		}
	}
	sort.Strings(out)
	return out
}

// Start is what a starting server does about encryption, before the apiserver starts.
type Start struct {
	// On says whether the apiserver encrypts Secrets (with Config).
	On bool
	// Create says that Config is new: the server writes it.
	Create bool
	Config Config
	// Rewrite is how many Secrets are stored other than with the active key: once the
	// apiserver serves, the server rewrites them, which encrypts them with it.
	Rewrite int
	// Warning is for the log: the provider flag differs from the configuration's.
	Warning string
}

// StartOptions are what PlanStart decides from.
type StartOptions struct {
	// Path is the configuration's file, for messages.
	Path string
	// Existing is the configuration on disk, nil when there is none.
	Existing *Config
	// Enable is --secrets-encryption (or --hardened).
	Enable bool
	// Provider is --secrets-encryption-provider, empty when not given.
	Provider Provider
	// Secrets is how the Secrets in etcd are stored.
	Secrets Survey
}

// PlanStart decides what a starting server does. It refuses to start when Secrets are stored
// with keys the configuration lacks: a new key would not read them, and the apiserver would
// fail every read of them. Encryption stays on once a configuration exists.
func PlanStart(o StartOptions) (Start, error) {
	if o.Existing == nil {
		if n := o.Secrets.Encrypted(); n > 0 {
			return Start{}, fmt.Errorf("%d Secrets in etcd are encrypted but %s is missing: restore it from a backup "+
				"(k1s does not create a new key, which could not read them)", n, o.Path)
		}
		if !o.Enable {
			return Start{}, nil
		}
		provider := o.Provider
		if provider == "" {
			provider = DefaultProvider
		}
		c, err := NewConfig(provider)
		if err != nil {
			return Start{}, err
		}
		return Start{On: true, Create: true, Config: c, Rewrite: o.Secrets.Secrets}, nil
	}
	c := *o.Existing
	if lost := o.Secrets.unreadable(c); len(lost) > 0 {
		return Start{}, fmt.Errorf("Secrets in etcd are encrypted with keys %s lacks (%s): restore it from a backup", o.Path, strings.Join(lost, ", "))
	}
	s := Start{On: true, Config: c, Rewrite: o.Secrets.NotWith(c.Active())}
	if o.Provider != "" && o.Provider != c.Active().Provider {
		s.Warning = fmt.Sprintf("Secrets are encrypted with %s (%s), not --secrets-encryption-provider %s: "+
			"run 'k1s secrets-encrypt rotate-keys --provider %s' to switch", c.Active().Provider, o.Path, o.Provider, o.Provider)
	}
	return s, nil
}
