package encryption

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// What earlier k1s versions wrote (k8s.io/apiserver's types, marshalled): it must read back.
const aescbcFile = `{
  "kind": "EncryptionConfiguration",
  "apiVersion": "apiserver.config.k8s.io/v1",
  "resources": [
    {
      "resources": [
        "secrets"
      ],
      "providers": [
        {
          "aescbc": {
            "keys": [
              {
                "name": "aescbckey-2024-01-02T03-04-05Z",
                "secret": "c2VjcmV0IGlzIHNlY3VyZSwgc2VjcmV0IGlzIHNl"
              }
            ]
          }
        },
        {
          "identity": {}
        }
      ]
    }
  ]
}
`

func TestReadEarlierConfiguration(t *testing.T) {
	path := filepath.Join(t.TempDir(), "encryption-config.json")
	if err := os.WriteFile(path, []byte(aescbcFile), 0o600); err != nil {
		t.Fatal(err)
	}
	c, exists, err := Read(path)
	if err != nil || !exists {
		t.Fatalf("Read: %v %v", exists, err)
	}
	if got := c.Active(); got.Provider != AESCBC || got.Name != "aescbckey-2024-01-02T03-04-05Z" || len(c.Keys) != 1 {
		t.Errorf("keys %+v", c.Keys)
	}
	// Written back, it is the same file.
	if err := Write(path, c); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(path); string(data) != aescbcFile {
		t.Errorf("written back:\n%s\nwant\n%s", data, aescbcFile)
	}

	if _, exists, err := Read(filepath.Join(t.TempDir(), "missing.json")); exists || err != nil {
		t.Errorf("missing file: %v %v", exists, err)
	}
	// A provider k1s does not manage would be lost on the next write: refused.
	kms := strings.Replace(aescbcFile, `"identity": {}`, `"kms": {"name": "vault"}`, 1)
	if err := os.WriteFile(path, []byte(kms), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Read(path); err == nil || !strings.Contains(err.Error(), "restore it from a backup") {
		t.Errorf("kms provider: %v", err)
	}
}

func TestRotatedAcrossProviders(t *testing.T) {
	path := filepath.Join(t.TempDir(), "encryption-config.json")
	old := Config{Keys: []Key{{Provider: AESCBC, Name: "a", Secret: "c2VjcmV0"}}}
	// No provider given: the active one's, so an aescbc cluster stays aescbc.
	same, key, err := old.Rotated("")
	if err != nil || key.Provider != AESCBC || same.Active() != key || len(same.Keys) != 2 {
		t.Fatalf("Rotated(\"\") = %+v %+v %v", same, key, err)
	}
	// Switching: the new provider's key writes, the old ones still read.
	c, key, err := old.Rotated(Secretbox)
	if err != nil || key.Provider != Secretbox || c.Active() != key || !c.Has(AESCBC, "a") {
		t.Fatalf("Rotated(secretbox) = %+v %+v %v", c, key, err)
	}
	if secret, err := base64.StdEncoding.DecodeString(key.Secret); err != nil || len(secret) != 32 {
		t.Errorf("secret %q: %d bytes, %v", key.Secret, len(secret), err)
	}
	if err := Write(path, c); err != nil {
		t.Fatal(err)
	}
	back, _, err := Read(path)
	if err != nil || len(back.Keys) != 2 || back.Keys[0] != c.Keys[0] || back.Keys[1] != c.Keys[1] {
		t.Errorf("read back %+v, %v; wrote %+v", back, err, c)
	}
	data, _ := os.ReadFile(path)
	if s, a, i := strings.Index(string(data), `"secretbox"`), strings.Index(string(data), `"aescbc"`), strings.Index(string(data), `"identity"`); !(s < a && a < i) {
		t.Errorf("providers out of order (secretbox, aescbc, identity):\n%s", data)
	}
}

func TestNewKeyNamesAreUnique(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	var keys []Key
	for range 3 {
		k, err := newKey(Secretbox, keys, now)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	if keys[0].Name != "secretboxkey-2025-01-02T03-04-05Z" || keys[1].Name == keys[0].Name || keys[2].Name == keys[1].Name {
		t.Errorf("names %s, %s, %s", keys[0].Name, keys[1].Name, keys[2].Name)
	}
}

func TestParseStored(t *testing.T) {
	for value, want := range map[string]Stored{
		"k8s\x00\n\x0cv1\x12\x06Secret":            {},
		"k8s:enc:aescbc:v1:aescbckey-1:\x01\x02":   {Provider: AESCBC, Key: "aescbckey-1"},
		"k8s:enc:secretbox:v1:sb:\x00:\x01":        {Provider: Secretbox, Key: "sb"},
		"k8s:enc:kms:v2:vault:\x0a":                {Provider: "kms", Key: "vault"},
		"k8s:enc:aesgcm":                           {Provider: "aesgcm", Key: "?"},
		`{"kind":"Secret","apiVersion":"v1"}`:      {},
		"k8s:enc:secretbox:v1:secretboxkey-2:data": {Provider: Secretbox, Key: "secretboxkey-2"},
	} {
		if got := ParseStored([]byte(value)); got != want {
			t.Errorf("ParseStored(%q) = %+v, want %+v", value, got, want)
		}
	}
	if !(Stored{Provider: AESCBC, Key: "k"}).Encrypted() || (Stored{}).Encrypted() {
		t.Error("Encrypted")
	}
}

func survey(values ...string) Survey {
	var s Survey
	for _, v := range values {
		s.Add([]byte(v))
	}
	return s
}

func TestPlanStart(t *testing.T) {
	const path = "/var/lib/k1s/server/cred/encryption-config.json"
	aescbc := &Config{Keys: []Key{{Provider: AESCBC, Name: "a1", Secret: "x"}}}
	plain := "k8s\x00plain"
	withA1 := "k8s:enc:aescbc:v1:a1:data"

	t.Run("off, nothing encrypted: stays off", func(t *testing.T) {
		s, err := PlanStart(StartOptions{Path: path, Secrets: survey(plain, plain)})
		if err != nil || s.On || s.Create {
			t.Errorf("%+v %v", s, err)
		}
	})
	t.Run("missing configuration with encrypted Secrets: refused, never a new key", func(t *testing.T) {
		for _, enable := range []bool{false, true} {
			s, err := PlanStart(StartOptions{Path: path, Enable: enable, Secrets: survey(plain, withA1, withA1)})
			if err == nil || s.Create {
				t.Fatalf("enable=%v: %+v, no error", enable, s)
			}
			want := "2 Secrets in etcd are encrypted but " + path + " is missing: restore it from a backup"
			if !strings.HasPrefix(err.Error(), want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("enable=%v: %q, want one line beginning %q", enable, err, want)
			}
		}
	})
	t.Run("enabling on an existing cluster: new secretbox key, every Secret rewritten", func(t *testing.T) {
		s, err := PlanStart(StartOptions{Path: path, Enable: true, Secrets: survey(plain, plain, plain)})
		if err != nil || !s.On || !s.Create || s.Config.Active().Provider != Secretbox || s.Rewrite != 3 {
			t.Errorf("%+v %v", s, err)
		}
		s, err = PlanStart(StartOptions{Path: path, Enable: true, Provider: AESCBC})
		if err != nil || !s.Create || s.Config.Active().Provider != AESCBC || s.Rewrite != 0 {
			t.Errorf("--secrets-encryption-provider aescbc on a new cluster: %+v %v", s, err)
		}
	})
	t.Run("existing aescbc configuration is kept, on without the flag", func(t *testing.T) {
		s, err := PlanStart(StartOptions{Path: path, Existing: aescbc, Secrets: survey(withA1, withA1)})
		if err != nil || !s.On || s.Create || s.Config.Active().Name != "a1" || s.Rewrite != 0 || s.Warning != "" {
			t.Errorf("%+v %v", s, err)
		}
	})
	t.Run("Secrets not yet with the active key are rewritten", func(t *testing.T) {
		// A rotation or an enabling interrupted half-way.
		c := &Config{Keys: []Key{{Provider: Secretbox, Name: "s2"}, {Provider: AESCBC, Name: "a1"}}}
		s, err := PlanStart(StartOptions{Path: path, Existing: c, Secrets: survey(withA1, plain, "k8s:enc:secretbox:v1:s2:x")})
		if err != nil || s.Rewrite != 2 {
			t.Errorf("%+v %v", s, err)
		}
	})
	t.Run("Secrets with a key the configuration lacks: refused", func(t *testing.T) {
		_, err := PlanStart(StartOptions{Path: path, Existing: aescbc, Secrets: survey(withA1, "k8s:enc:secretbox:v1:other:x")})
		if err == nil || !strings.Contains(err.Error(), "1 with key secretbox/other") || !strings.Contains(err.Error(), "restore it from a backup") {
			t.Errorf("%v", err)
		}
	})
	t.Run("a provider flag unlike the configuration's: a warning with the fix", func(t *testing.T) {
		s, err := PlanStart(StartOptions{Path: path, Existing: aescbc, Enable: true, Provider: Secretbox})
		if err != nil || s.Config.Active().Provider != AESCBC || !strings.Contains(s.Warning, "k1s secrets-encrypt rotate-keys --provider secretbox") {
			t.Errorf("%+v %v", s, err)
		}
	})
}

func TestParseProvider(t *testing.T) {
	if p, err := ParseProvider("--provider", "secretbox"); p != Secretbox || err != nil {
		t.Errorf("secretbox: %v %v", p, err)
	}
	if _, err := ParseProvider("--secrets-encryption-provider", "aesgcm"); err == nil || !strings.Contains(err.Error(), "use secretbox or aescbc") {
		t.Errorf("aesgcm: %v", err)
	}
}

// Two holders never overlap: the second waits, is told who holds the lock, and gets it once
// the first releases it.
func TestLockSerialises(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cred", "encryption-config.lock")
	ctx := context.Background()
	release, err := Lock(ctx, path, "rotate-keys", nil)
	if err != nil {
		t.Fatal(err)
	}
	var inside atomic.Int32
	inside.Store(1)
	var told atomic.Value
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		second, err := Lock(ctx, path, "k1s server", func(other string) { told.Store(other) })
		if err != nil {
			t.Error(err)
			return
		}
		if inside.Add(1) != 1 {
			t.Error("the second holder got the lock while the first held it")
		}
		second()
	}()
	time.Sleep(500 * time.Millisecond)
	if other, _ := told.Load().(string); !strings.HasPrefix(other, "rotate-keys (pid ") {
		t.Errorf("the waiter was told %q", other)
	}
	inside.Add(-1)
	release()
	release() // idempotent
	wg.Wait()

	// A waiter gives up when its context ends.
	release, err = Lock(ctx, path, "rotate-keys", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := Lock(short, path, "rotate-keys", nil); err == nil {
		t.Error("a second Lock got the lock while it was held")
	}
}
