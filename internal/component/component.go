// Package component defines what every part of k1s that runs (etcd, the apiserver, the kubelet,
// k1s's own controllers…) implements, and a manager that starts them in dependency order,
// waits for each to be ready, and stops them in reverse.
package component

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Component is one running part of k1s.
type Component interface {
	// Name is how logs and errors refer to the component.
	Name() string
	// Start launches the component and returns once it is running (not necessarily ready).
	// The component runs until ctx ends or Stop is called.
	Start(ctx context.Context) error
	// Ready returns nil once the component serves; otherwise an error that says what it is
	// still waiting for, in words a user can act on.
	Ready(ctx context.Context) error
	// Exited is closed when the component is no longer running, by itself or after Stop.
	Exited() <-chan struct{}
	// Stop ends the component and waits for it; it returns why the component ended if that
	// was a failure.
	Stop() error
}

// Func adapts a blocking run function (the shape of every upstream component's entry point:
// run until the context ends) to a Component.
type Func struct {
	name  string
	run   func(ctx context.Context) error
	ready func(ctx context.Context) error

	mu     sync.Mutex
	cancel context.CancelFunc
	exited chan struct{}
	err    error
}

// NewFunc returns a Component that runs run in a goroutine. ready may be nil when the
// component is ready as soon as it runs.
func NewFunc(name string, run, ready func(ctx context.Context) error) *Func {
	return &Func{name: name, run: run, ready: ready, exited: make(chan struct{})}
}

func (f *Func) Name() string { return f.name }

func (f *Func) Start(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	f.mu.Lock()
	f.cancel = cancel
	f.mu.Unlock()
	go func() {
		err := f.run(ctx)
		switch {
		case ctx.Err() != nil:
			// Stopped on request: upstream components report that in various ways
			// (the scheduler returns "finished without leader elect"); none is a failure.
			err = nil
		case err == nil:
			err = errors.New("exited unexpectedly")
		}
		f.mu.Lock()
		f.err = err
		f.mu.Unlock()
		close(f.exited)
	}()
	return nil
}

func (f *Func) Ready(ctx context.Context) error {
	select {
	case <-f.exited:
		return fmt.Errorf("%s has exited", f.name)
	default:
	}
	if f.ready == nil {
		return nil
	}
	return f.ready(ctx)
}

func (f *Func) Exited() <-chan struct{} { return f.exited }

// Stop cancels the component's context and waits for its run function to return.
func (f *Func) Stop() error {
	f.mu.Lock()
	cancel := f.cancel
	f.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	<-f.exited
	return f.Err()
}

// Err is why the component ended, or nil while it runs or when it was stopped cleanly.
func (f *Func) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// Logger is what the manager needs to report progress.
type Logger interface {
	Debugf(format string, args ...any)
	Infof(format string, args ...any)
	Warnf(format string, args ...any)
}

// Manager starts components in order and stops them in reverse.
type Manager struct {
	// Log receives progress lines.
	Log Logger
	// PollInterval is how often readiness is checked.
	PollInterval time.Duration
	// ReportInterval is how often a component that is still not ready is reported.
	ReportInterval time.Duration
	// StopTimeout bounds how long one component may take to stop before the manager moves on.
	StopTimeout time.Duration
	// OnStop, if set, is called when stopping begins.
	OnStop func()
	// OnReady, if set, is called once every component is ready.
	OnReady func()
	// Epoch is time zero of the start-up timeline the manager logs at debug level (each
	// component's start and ready, each stop); default: when the process was executed.
	Epoch time.Time

	started []Component
}

// Run starts components one after another, waiting for each to be ready, then waits until ctx
// ends or a component exits on its own. It then stops every started component in reverse
// order. It returns nil after a requested stop, or the cause of the failure.
func (m *Manager) Run(ctx context.Context, components ...Component) error {
	m.defaults()
	err := m.startAll(ctx, components)
	if err == nil && ctx.Err() == nil {
		m.Log.Infof("k1s is ready")
		if m.OnReady != nil {
			m.OnReady()
		}
		err = m.wait(ctx)
	} else if err == nil {
		m.Log.Infof("stopping before ready: %v", context.Cause(ctx))
	}
	m.stopAll()
	return err
}

func (m *Manager) defaults() {
	if m.Epoch.IsZero() {
		m.Epoch = processStart()
	}
	if m.PollInterval == 0 {
		// Most components are ready within milliseconds of the one before; a node's start
		// passes through a dozen of them.
		m.PollInterval = 25 * time.Millisecond
	}
	if m.ReportInterval == 0 {
		m.ReportInterval = 5 * time.Second
	}
	if m.StopTimeout == 0 {
		// Upstream servers drain connections on stop for up to a minute (the apiserver waits
		// for clients such as the kubelet's informers, which never close theirs). The process
		// exits right after the manager, so a bounded wait per component keeps the whole
		// stop within seconds; etcd's write-ahead log makes that safe.
		m.StopTimeout = 3 * time.Second
	}
}

func (m *Manager) startAll(ctx context.Context, components []Component) error {
	for _, c := range components {
		if ctx.Err() != nil {
			return nil
		}
		begin := time.Now()
		// Components run until Stop, not until ctx ends: the manager stops them one by one
		// in reverse order, and a cancelled ctx would end them all at once.
		if err := c.Start(context.WithoutCancel(ctx)); err != nil {
			return fmt.Errorf("starting %s: %w", c.Name(), err)
		}
		m.started = append(m.started, c)
		if err := m.waitReady(ctx, c, begin); err != nil {
			return err
		}
		m.Log.Debugf("timeline: %s start +%d ms, ready +%d ms", c.Name(), m.sinceEpoch(begin), m.sinceEpoch(time.Now()))
	}
	return nil
}

// sinceEpoch is t on the timeline, in milliseconds.
func (m *Manager) sinceEpoch(t time.Time) int64 { return t.Sub(m.Epoch).Milliseconds() }

// waitReady polls c until it is ready, logging what it still waits for every ReportInterval.
func (m *Manager) waitReady(ctx context.Context, c Component, begin time.Time) error {
	poll := time.NewTicker(m.PollInterval)
	defer poll.Stop()
	lastReport := begin
	for {
		err := c.Ready(ctx)
		if err == nil {
			m.Log.Infof("%s is ready (%s)", c.Name(), time.Since(begin).Round(time.Millisecond))
			return nil
		}
		if time.Since(lastReport) >= m.ReportInterval {
			lastReport = time.Now()
			m.Log.Infof("still waiting for %s after %s: %v", c.Name(), time.Since(begin).Round(time.Second), err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-c.Exited():
			return exitError(c)
		case <-poll.C:
		}
	}
}

func (m *Manager) wait(ctx context.Context) error {
	cases := make(chan Component, len(m.started))
	stop := make(chan struct{})
	defer close(stop)
	for _, c := range m.started {
		if _, ok := c.(await); ok {
			continue // its component is watched already
		}
		go func(c Component) {
			select {
			case <-c.Exited():
				cases <- c
			case <-stop:
			}
		}(c)
	}
	select {
	case <-ctx.Done():
		m.Log.Infof("stopping: %v", context.Cause(ctx))
		return nil
	case c := <-cases:
		return exitError(c)
	}
}

func exitError(c Component) error {
	if a, ok := c.(await); ok {
		c = a.c // the cause is the awaited component's
	}
	if err := c.Stop(); err != nil {
		return fmt.Errorf("%s stopped: %w", c.Name(), err)
	}
	return fmt.Errorf("%s stopped unexpectedly", c.Name())
}

func (m *Manager) stopAll() {
	if m.OnStop != nil {
		m.OnStop()
	}
	for i := len(m.started) - 1; i >= 0; i-- {
		c := m.started[i]
		begin := time.Now()
		done := make(chan error, 1)
		go func() { done <- c.Stop() }()
		select {
		case err := <-done:
			if err != nil {
				m.Log.Warnf("%s stopped with error: %v", c.Name(), err)
			}
			m.Log.Debugf("timeline: %s stopped in %d ms", c.Name(), time.Since(begin).Milliseconds())
		case <-time.After(m.StopTimeout):
			m.Log.Warnf("%s did not stop within %s; moving on", c.Name(), m.StopTimeout)
		}
	}
	m.started = nil
}

// Background wraps a component so that the manager starts it without waiting for it to be
// ready, and goes on with the next one; an Await of it later in the order waits for it. Work
// that does not depend on what comes between (containerd and its images, while the control
// plane starts) then overlaps.
func Background(c Component) Component { return background{c} }

type background struct{ Component }

func (background) Ready(context.Context) error { return nil }

// Await is the point in the start order where a Background component must be ready. It
// starts and stops nothing itself.
func Await(c Component) Component { return await{c} }

type await struct{ c Component }

func (a await) Name() string                    { return a.c.Name() }
func (await) Start(context.Context) error       { return nil }
func (a await) Ready(ctx context.Context) error { return a.c.Ready(ctx) }
func (a await) Exited() <-chan struct{}         { return a.c.Exited() }
func (await) Stop() error                       { return nil }
