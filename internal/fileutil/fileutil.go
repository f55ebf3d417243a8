// Package fileutil writes files the way every k1s file is written: atomically.
package fileutil

import (
	"fmt"
	"os"
	"path/filepath"
)

// WriteAtomic writes data to path through a temporary file and a rename, so that a reader
// (or a crash) never sees a half-written file. Missing parent directories are created 0700.
func WriteAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating directory %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// SymlinkAtomic points link at target through a uniquely named temporary link and a rename,
// so that concurrent callers (two k1s starting on one data directory) never trip over each
// other's temporary link and a reader always finds the old or the new target.
func SymlinkAtomic(target, link string) error {
	for attempt := 0; ; attempt++ {
		tmp := fmt.Sprintf("%s.tmp-%d-%d", link, os.Getpid(), attempt)
		err := os.Symlink(target, tmp)
		if os.IsExist(err) && attempt < 100 {
			continue // left by a crashed run with our PID, or another goroutine's attempt
		}
		if err != nil {
			return fmt.Errorf("linking %s: %w", link, err)
		}
		if err := os.Rename(tmp, link); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("linking %s: %w", link, err)
		}
		return nil
	}
}
