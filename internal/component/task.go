package component

import (
	"context"
	"errors"
	"sync/atomic"
)

// Progress tells a task's readiness check what the task is waiting for now ("the node's pod
// CIDR"), so that the manager's progress lines say it.
type Progress func(waitingFor string)

// Task returns a component that does its work once when it starts and is ready when do has
// returned nil; it then idles until stopped (what it set up stays). Until then its readiness
// says "<doing>: waiting for <what do last reported>" ("waiting for …" without doing), or
// just doing. An error from do ends the component, and the manager reports it.
func Task(name, doing string, do func(ctx context.Context, progress Progress) error) Component {
	var done atomic.Bool
	var waiting atomic.Pointer[string]
	progress := func(what string) { waiting.Store(&what) }
	run := func(ctx context.Context) error {
		if err := do(ctx, progress); err != nil {
			return err
		}
		done.Store(true)
		<-ctx.Done()
		return nil
	}
	ready := func(context.Context) error {
		if done.Load() {
			return nil
		}
		if w := waiting.Load(); w != nil {
			if doing == "" {
				return errors.New("waiting for " + *w)
			}
			return errors.New(doing + ": waiting for " + *w)
		}
		return errors.New(doing)
	}
	return NewFunc(name, run, ready)
}
