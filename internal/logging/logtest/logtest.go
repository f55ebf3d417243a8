// Package logtest gives tests a logrus logger that writes through t.Log, and stops writing once
// the test has ended (goroutines that outlive it must not log to a finished test).
package logtest

import (
	"strings"
	"sync"
	"testing"

	"github.com/sirupsen/logrus"
)

// New returns a logger at debug level that writes to t.
func New(t testing.TB) *logrus.Logger {
	w := &writer{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	log := logrus.New()
	log.SetOutput(w)
	log.SetLevel(logrus.DebugLevel)
	return log
}

type writer struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func (w *writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}
