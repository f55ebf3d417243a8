package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	encryptioncontroller "k8s.io/apiserver/pkg/server/options/encryptionconfig/controller"
	"k8s.io/client-go/kubernetes"

	"github.com/k1s-io/k1s/internal/args"
	"github.com/k1s-io/k1s/internal/component"
	"github.com/k1s-io/k1s/internal/encryption"
	"github.com/k1s-io/k1s/internal/etcd"
	"github.com/k1s-io/k1s/internal/kubeclient"
	"github.com/k1s-io/k1s/internal/layout"
)

// encryptionReloadInterval is how often the apiserver re-reads its encryption configuration
// (upstream: a minute). Each step of a key rotation waits for a reload, and the read is of a
// small file: a few seconds make `k1s secrets-encrypt rotate-keys` take seconds, not minutes.
const encryptionReloadInterval = 5 * time.Second

// encryptionEnabled reports whether the apiserver encrypts Secrets: when asked, and always once
// a configuration exists, since Secrets written with its keys are unreadable without it.
func (c *completedConfig) encryptionEnabled() bool {
	if c.SecretsEncryption {
		return true
	}
	if c.join != nil && c.join.bundle.Files[c.files.Rel(c.files.EncryptionConfig())] != nil {
		return true
	}
	_, err := os.Stat(c.files.EncryptionConfig())
	return err == nil
}

// secretsEncryption is what a server does about encrypting Secrets at start. Before the
// apiserver starts it reads how etcd stores the Secrets and plans from that and the
// configuration (encryption.PlanStart): a missing configuration while Secrets are stored
// encrypted stops the server, and turning encryption on writes a new configuration. Once the
// apiserver serves, it rewrites the Secrets stored other than with the active key (those of
// a cluster that just turned encryption on, or of an interrupted rotation), which encrypts
// them with it. It holds the configuration's lock from its check until that rewrite is
// done, so that no rotate-keys changes the keys in between.
type secretsEncryption struct {
	cfg  *completedConfig
	etcd *etcd.Server
	// secrets is the etcd key prefix of Secrets.
	secrets string
	// managed is false when the user gave the apiserver a configuration of their own.
	managed bool

	release func()
	plan    encryption.Start
}

func newSecretsEncryption(cfg *completedConfig, etcdServer *etcd.Server, apiserverArgs []string) *secretsEncryption {
	prefix, ok := args.Value(apiserverArgs, "etcd-prefix")
	if !ok {
		prefix = "/registry"
	}
	own := cfg.files.EncryptionConfig()
	given, set := args.Value(apiserverArgs, "encryption-provider-config")
	return &secretsEncryption{cfg: cfg, etcd: etcdServer, secrets: path.Join(prefix, "secrets") + "/", managed: !set || given == own}
}

// check is the component that runs between etcd and the apiserver.
func (e *secretsEncryption) check() component.Component {
	return component.Task("secrets encryption", "checking how Secrets are stored in etcd", func(ctx context.Context, progress component.Progress) error {
		// Upstream's variable is read when the apiserver builds its reload controller.
		encryptioncontroller.EncryptionConfigFileChangePollDuration = encryptionReloadInterval
		if !e.managed {
			return nil
		}
		files, log := e.cfg.files, e.cfg.Log
		release, err := encryption.Lock(ctx, files.EncryptionLock(), "k1s server", func(other string) {
			progress("the lock on " + files.EncryptionConfig() + ", held by " + other)
		})
		if err != nil {
			return err
		}
		plan, err := e.planStart(ctx)
		if err != nil {
			release()
			return err
		}
		if plan.Warning != "" {
			log.Warn(plan.Warning)
		}
		if plan.Create {
			if err := encryption.Write(files.EncryptionConfig(), plan.Config); err != nil {
				release()
				return fmt.Errorf("secrets encryption: %w", err)
			}
			log.Infof("secrets encryption on: Secrets are written with the new %s key %s (%s)", plan.Config.Active().Provider, plan.Config.Active().Name, files.EncryptionConfig())
		}
		if !plan.On || plan.Rewrite == 0 {
			release()
			return nil
		}
		log.Infof("%d Secrets are not stored with key %s: rewriting them once the apiserver serves", plan.Rewrite, plan.Config.Active())
		e.plan, e.release = plan, release
		return nil
	})
}

func (e *secretsEncryption) planStart(ctx context.Context) (encryption.Start, error) {
	path := e.cfg.files.EncryptionConfig()
	existing, exists, err := encryption.Read(path)
	if err != nil {
		return encryption.Start{}, err
	}
	survey, err := e.survey(ctx)
	if err != nil {
		return encryption.Start{}, err
	}
	opts := encryption.StartOptions{Path: path, Enable: e.cfg.SecretsEncryption, Provider: e.cfg.secretsProvider, Secrets: survey}
	if exists {
		opts.Existing = &existing
	}
	return encryption.PlanStart(opts)
}

// survey reads how the Secrets are stored, from etcd.
func (e *secretsEncryption) survey(ctx context.Context) (encryption.Survey, error) {
	var s encryption.Survey
	err := e.etcd.RangePrefix(ctx, e.secrets, func(_, value []byte) error {
		s.Add(value)
		return nil
	})
	return s, err
}

// rewrite is the component, after the apiserver, that rewrites the Secrets the check found
// stored other than with the active key. It runs in the background and retries: a Secret
// that cannot be rewritten now (a webhook refusing updates) must not stop the server.
func (e *secretsEncryption) rewrite(admin *kubeclient.Lazy) component.Component {
	return component.Background(component.Task("secrets re-encryption", "", func(ctx context.Context, _ component.Progress) error {
		if e.release == nil {
			return nil
		}
		defer e.release()
		log, key := e.cfg.Log, e.plan.Config.Active()
		for {
			n, err := e.rewriteOnce(ctx, admin, key)
			if err == nil {
				log.Infof("secrets encryption: every Secret is stored with key %s (%d rewritten)", key, n)
				return nil
			}
			if ctx.Err() != nil {
				return nil // stopping: the next start rewrites what is left
			}
			log.Warnf("secrets encryption: %v; retrying in 30 s", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(30 * time.Second):
			}
		}
	}))
}

// rewriteOnce rewrites every Secret through the API, then checks in etcd that each is
// stored with key.
func (e *secretsEncryption) rewriteOnce(ctx context.Context, admin *kubeclient.Lazy, key encryption.Key) (int, error) {
	client, err := admin.Client()
	if err != nil {
		return 0, err
	}
	n, err := rewriteSecrets(ctx, client)
	if err != nil {
		return n, fmt.Errorf("rewriting Secrets with key %s: %w", key, err)
	}
	survey, err := e.survey(ctx)
	if err != nil {
		return n, err
	}
	if left := survey.NotWith(key); left > 0 {
		return n, fmt.Errorf("%d Secrets still not stored with key %s after rewriting them", left, key)
	}
	return n, nil
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

// waitEncryptionConfigLoaded waits until the apiserver has reloaded the configuration.
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
			reason := fmt.Sprintf("it re-reads the file every %s", encryptionReloadInterval)
			if err != nil {
				reason = err.Error()
			}
			log.Infof("waiting for the apiserver to load %s (%s, %s so far)", path, reason, time.Since(begin).Round(time.Second))
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the apiserver did not load %s within 3 minutes (is k1s server running with this --data-dir?): %w", path, context.Cause(ctx))
		case <-time.After(time.Second):
		}
	}
}

// RotateEncryptionKey makes a new key (of provider; the active key's when empty) the one
// Secrets are written with, rewrites every Secret with it through the API, and then drops the
// old keys. Each step waits for the apiserver to load the configuration it depends on, so
// that no Secret is ever written with a key the apiserver cannot read. It holds the
// configuration's lock throughout (waiting for it, and saying so through log, while another
// rotation or a starting server holds it): two rotations that overlapped could each drop
// the key the other's rewrite used.
func RotateEncryptionKey(ctx context.Context, client kubernetes.Interface, files layout.Server, provider encryption.Provider, log logrus.FieldLogger) (encryption.Key, error) {
	path := files.EncryptionConfig()
	// A server that cannot rewrite a Secret (a webhook refusing updates) retries while it holds
	// the lock: say so rather than wait for ever.
	lockCtx, cancel := context.WithTimeoutCause(ctx, rotationLockWait,
		fmt.Errorf("another k1s has held it for %s: see its log for the Secret it cannot rewrite, fix that, and run rotate-keys again", rotationLockWait))
	defer cancel()
	release, err := encryption.Lock(lockCtx, files.EncryptionLock(), "k1s secrets-encrypt rotate-keys", func(other string) {
		log.Infof("waiting for %s to finish with %s", other, path)
	})
	if err != nil {
		return encryption.Key{}, err
	}
	defer release()
	current, exists, err := encryption.Read(path)
	if err != nil {
		return encryption.Key{}, err
	}
	if !exists {
		return encryption.Key{}, fmt.Errorf("secrets encryption is off (no %s): start k1s server with --secrets-encryption first", path)
	}
	// The running apiserver must already use what is on disk: a half-done earlier rotation is
	// finished by this one, never undone.
	if err := waitEncryptionConfigLoaded(ctx, client, path, log); err != nil {
		return encryption.Key{}, err
	}
	rotated, key, err := current.Rotated(provider)
	if err != nil {
		return key, err
	}
	if err := encryption.Write(path, rotated); err != nil {
		return key, err
	}
	log.Infof("new key %s written; waiting for the apiserver to load it", key)
	if err := waitEncryptionConfigLoaded(ctx, client, path, log); err != nil {
		return key, err
	}
	n, err := rewriteSecrets(ctx, client)
	if err != nil {
		return key, fmt.Errorf("rewriting Secrets with the new key (rerun rotate-keys to finish): %w", err)
	}
	log.Infof("rewrote %d Secrets with key %s", n, key)
	// Every Secret is now written with the new key: dropping the old one is safe whenever the
	// apiserver loads it.
	if err := encryption.Write(path, encryption.Config{Keys: []encryption.Key{key}}); err != nil {
		return key, err
	}
	log.Infof("dropped the old keys; the apiserver loads the configuration within %s", encryptionReloadInterval)
	return key, nil
}

// rotationLockWait is how long rotate-keys waits for another holder of the rotation lock.
const rotationLockWait = 5 * time.Minute

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
			if err := rewriteSecret(ctx, client, &list.Items[i]); err != nil {
				return n, err
			}
			n++
		}
		if list.Continue == "" {
			return n, nil
		}
		opts.Continue = list.Continue
	}
}

// rewriteSecret updates secret unchanged. A Secret changed meanwhile may have been written
// just before the apiserver loaded the new key: it is read and written again, until it is
// written or gone.
func rewriteSecret(ctx context.Context, client kubernetes.Interface, secret *corev1.Secret) error {
	secrets := client.CoreV1().Secrets(secret.Namespace)
	for attempt := 0; ; attempt++ {
		_, err := secrets.Update(ctx, secret, metav1.UpdateOptions{FieldManager: fieldManager})
		switch {
		case err == nil || apierrors.IsNotFound(err):
			return nil
		case !apierrors.IsConflict(err) || attempt == 10:
			return fmt.Errorf("Secret %s/%s: %w", secret.Namespace, secret.Name, err)
		}
		fresh, err := secrets.Get(ctx, secret.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		} else if err != nil {
			return fmt.Errorf("Secret %s/%s: %w", secret.Namespace, secret.Name, err)
		}
		secret = fresh
	}
}
