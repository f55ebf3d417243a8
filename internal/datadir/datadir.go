// Package datadir owns what marks and guards a k1s data directory: the lock that one k1s (server
// or agent) holds for its life, whose file is also the marker that a directory is k1s's.
package datadir

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/k1s-io/k1s/internal/layout"
)

// EnsureWritable creates dir (0700) and proves that files can be created in it.
func EnsureWritable(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("data directory %s cannot be created (%w); fix it or choose another with --data-dir", dir, errors.Unwrap(err))
	}
	f, err := os.CreateTemp(dir, ".write-test-*")
	if err != nil {
		return fmt.Errorf("data directory %s is not writable (%w); fix it or choose another with --data-dir", dir, errors.Unwrap(err))
	}
	f.Close()
	os.Remove(f.Name())
	return nil
}

// Lock is an exclusive lock on a data directory, held for the life of the process.
type Lock struct{ f *os.File }

// Acquire makes sure the data directory is writable (EnsureWritable) and takes its lock, so
// that a second k1s on the same directory stops before it touches anything.
func Acquire(dataDir string) (*Lock, error) {
	if err := EnsureWritable(dataDir); err != nil {
		return nil, err
	}
	path := layout.DataDir(dataDir).Lock()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening lock file %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			pid := strings.TrimSpace(string(holder))
			if pid == "" {
				pid = "unknown"
			}
			return nil, fmt.Errorf("another k1s (pid %s) is already running on data directory %s; stop it or choose another --data-dir", pid, dataDir)
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{f: f}, nil
}

// Release gives the lock up.
func (l *Lock) Release() {
	if l != nil && l.f != nil {
		l.f.Close()
	}
}

// Held reports whether a running k1s holds the data directory's lock.
func Held(dataDir string) bool {
	f, err := os.Open(layout.DataDir(dataDir).Lock())
	if err != nil {
		return false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		return errors.Is(err, unix.EWOULDBLOCK)
	}
	_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return false
}
