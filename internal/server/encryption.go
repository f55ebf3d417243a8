package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/k1s-io/k1s/internal/fileutil"
)

// encryptionEnabled reports whether the apiserver encrypts Secrets: when asked, and always once
// a configuration exists, since Secrets written with its keys are unreadable without it.
func (c *completedConfig) encryptionEnabled() bool {
	if c.SecretsEncryption {
		return true
	}
	_, err := os.Stat(c.files.EncryptionConfig())
	return err == nil
}

// ensureEncryptionConfig creates the configuration with one new AES-CBC key when missing.
// identity stays last, so that Secrets written before encryption was turned on stay readable.
func ensureEncryptionConfig(path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	key, err := newEncryptionKey()
	if err != nil {
		return err
	}
	return writeEncryptionConfig(path, []apiserverv1.Key{key})
}

func newEncryptionKey() (apiserverv1.Key, error) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return apiserverv1.Key{}, fmt.Errorf("generating an encryption key: %w", err)
	}
	return apiserverv1.Key{
		Name:   "aescbckey-" + time.Now().UTC().Format("2006-01-02T15-04-05Z"),
		Secret: base64.StdEncoding.EncodeToString(secret),
	}, nil
}

func writeEncryptionConfig(path string, keys []apiserverv1.Key) error {
	cfg := apiserverv1.EncryptionConfiguration{
		TypeMeta: metav1.TypeMeta{APIVersion: "apiserver.config.k8s.io/v1", Kind: "EncryptionConfiguration"},
		Resources: []apiserverv1.ResourceConfiguration{{
			Resources: []string{"secrets"},
			Providers: []apiserverv1.ProviderConfiguration{
				{AESCBC: &apiserverv1.AESConfiguration{Keys: keys}},
				{Identity: &apiserverv1.IdentityConfiguration{}},
			},
		}},
	}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return fileutil.WriteAtomic(path, append(data, '\n'), 0o600)
}

// EncryptionKeys returns the AES-CBC keys of the configuration at path, the one new Secrets
// are written with first. An absent file gives no keys and no error.
func EncryptionKeys(path string) ([]apiserverv1.Key, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var cfg apiserverv1.EncryptionConfiguration
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, fmt.Errorf("%s is malformed: %w", path, err)
	}
	for _, r := range cfg.Resources {
		for _, p := range r.Providers {
			if p.AESCBC != nil && len(p.AESCBC.Keys) > 0 {
				return p.AESCBC.Keys, nil
			}
		}
	}
	return nil, fmt.Errorf("%s has no aescbc key: restore it from a backup", path)
}

// EncryptionConfigLoaded reports whether the running apiserver uses the configuration now on
// disk, from the hash it publishes of the file it loaded.
func EncryptionConfigLoaded(ctx context.Context, client kubernetes.Interface, path string) (bool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	want := fmt.Sprintf(`hash="sha256:%x"`, sha256.Sum256(data))
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	metrics, err := client.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return false, fmt.Errorf("reading the apiserver's metrics: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(metrics))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "apiserver_encryption_config_controller_last_config_info{") && strings.Contains(line, want) {
			return true, nil
		}
	}
	return false, sc.Err()
}

// waitEncryptionConfigLoaded waits until the apiserver has reloaded the configuration (it
// looks at the file once a minute).
func waitEncryptionConfigLoaded(ctx context.Context, client kubernetes.Interface, path string, log logrus.FieldLogger) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	begin := time.Now()
	lastLog := begin
	for {
		loaded, err := EncryptionConfigLoaded(ctx, client, path)
		if loaded {
			return nil
		}
		if time.Since(lastLog) >= 10*time.Second {
			reason := "it reads the file once a minute"
			if err != nil {
				reason = err.Error()
			}
			log.Infof("waiting for the apiserver to load %s (%s, %s so far)", path, reason, time.Since(begin).Round(time.Second))
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the apiserver did not load %s within 3 minutes (is k1s server running with this --data-dir?): %w", path, context.Cause(ctx))
		case <-time.After(2 * time.Second):
		}
	}
}

// RotateEncryptionKey makes a new key the one Secrets are written with, rewrites every Secret
// with it through the API, and then drops the old keys. Each step waits for the apiserver to
// load the configuration it depends on, so that no Secret is ever written with a key the
// apiserver cannot read.
func RotateEncryptionKey(ctx context.Context, client kubernetes.Interface, path string, log logrus.FieldLogger) (apiserverv1.Key, error) {
	keys, err := EncryptionKeys(path)
	if err != nil {
		return apiserverv1.Key{}, err
	}
	if len(keys) == 0 {
		return apiserverv1.Key{}, fmt.Errorf("secrets encryption is off (no %s): start k1s server with --secrets-encryption first", path)
	}
	// The running apiserver must already use what is on disk: a half-done earlier rotation is
	// finished by this one, never undone.
	if err := waitEncryptionConfigLoaded(ctx, client, path, log); err != nil {
		return apiserverv1.Key{}, err
	}
	key, err := newEncryptionKey()
	if err != nil {
		return key, err
	}
	if err := writeEncryptionConfig(path, append([]apiserverv1.Key{key}, keys...)); err != nil {
		return key, err
	}
	log.Infof("new key %s written; waiting for the apiserver to load it", key.Name)
	if err := waitEncryptionConfigLoaded(ctx, client, path, log); err != nil {
		return key, err
	}
	n, err := rewriteSecrets(ctx, client)
	if err != nil {
		return key, fmt.Errorf("rewriting Secrets with the new key (rerun rotate-keys to finish): %w", err)
	}
	log.Infof("rewrote %d Secrets with key %s", n, key.Name)
	// Every Secret is now written with the new key: dropping the old one is safe whenever the
	// apiserver loads it.
	if err := writeEncryptionConfig(path, []apiserverv1.Key{key}); err != nil {
		return key, err
	}
	log.Infof("dropped the old keys; the apiserver loads the configuration within a minute")
	return key, nil
}

// rewriteSecrets updates every Secret unchanged: the apiserver stores an object read with a
// key other than its first one again, so the update re-encrypts it with the first.
func rewriteSecrets(ctx context.Context, client kubernetes.Interface) (int, error) {
	n := 0
	opts := metav1.ListOptions{Limit: 200}
	for {
		list, err := client.CoreV1().Secrets(metav1.NamespaceAll).List(ctx, opts)
		if err != nil {
			return n, err
		}
		for i := range list.Items {
			secret := &list.Items[i]
			_, err := client.CoreV1().Secrets(secret.Namespace).Update(ctx, secret, metav1.UpdateOptions{FieldManager: fieldManager})
			// A Secret changed or deleted meanwhile was written with the new key, or is gone.
			if err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
				return n, fmt.Errorf("Secret %s/%s: %w", secret.Namespace, secret.Name, err)
			}
			n++
		}
		if list.Continue == "" {
			return n, nil
		}
		opts.Continue = list.Continue
	}
}
