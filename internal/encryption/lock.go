package encryption

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Lock takes the lock that serialises changes to the encryption configuration and the
// rewrites of Secrets that go with them: `k1s secrets-encrypt rotate-keys` holds it for its
// whole run, a starting server from its check of etcd until the Secrets it rewrites are
// done. It is a flock(2) on a file beside the configuration, so it needs the configuration's
// host, as both do, and the kernel drops it with the process that held it: no stale lock
// survives a crash. holder says who takes it ("rotate-keys"); it waits while another holds
// it, calling waiting with that one's holder line every 10 seconds, until ctx ends.
func Lock(ctx context.Context, path, holder string, waiting func(other string)) (release func(), err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating the directory of %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening lock file %s: %w", path, err)
	}
	var lastReport time.Time
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		if waiting != nil && time.Since(lastReport) >= 10*time.Second {
			other, _ := os.ReadFile(path)
			waiting(strings.TrimSpace(string(other)))
			lastReport = time.Now()
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for the lock %s: %w", path, context.Cause(ctx))
		case <-time.After(200 * time.Millisecond):
		}
	}
	// Who holds it, for the message of whoever waits.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(fmt.Sprintf("%s (pid %d)\n", holder, os.Getpid())), 0)
	}
	var once sync.Once
	return func() { once.Do(func() { f.Close() }) }, nil
}
