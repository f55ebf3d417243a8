// Package controllers runs k1s's own cluster-scoped controllers (the cluster-info publisher,
// the CSR approver, the add-on deployer, and next the etcd member reconciler…) under a Lease,
// so that with several servers exactly one of them runs them.
package controllers

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/k1s-io/k1s/internal/join"
)

// Controller is one of k1s's cluster-scoped controllers.
type Controller interface {
	// Name is how logs refer to the controller.
	Name() string
	// Run works until ctx ends. An error (or a return before ctx ends) makes the runner
	// restart the controller after a backoff, for as long as this server leads.
	Run(ctx context.Context) error
}

// Defaults of Config, the values kube-controller-manager uses: a server that dies without
// releasing the lease is replaced within LeaseDuration.
const (
	DefaultNamespace      = metav1.NamespaceSystem
	DefaultLeaseName      = "k1s-controllers"
	DefaultLeaseDuration  = 15 * time.Second
	DefaultRenewDeadline  = 10 * time.Second
	DefaultRetryPeriod    = 2 * time.Second
	DefaultRestartBackoff = time.Second
	// maxRestartBackoff caps the delay before a failing controller's next run; a controller
	// that ran this long without failing starts again from RestartBackoff.
	maxRestartBackoff = time.Minute
)

// Initializer is a Controller whose first work others wait for (a publisher): while the runner
// leads, it is ready only once every Initializer is initialized. A runner that follows is
// ready at once: the leader publishes.
type Initializer interface {
	Controller
	Initialized() bool
}

// Config is what a Runner needs. Zero durations and names take the defaults above.
type Config struct {
	// Client returns the client to reach the API server. It is called once, on Start: the
	// server builds its components before the credentials exist.
	Client func() (kubernetes.Interface, error)
	// Identity names this server in the lease. It must be stable across restarts (the node
	// name) so that a restarted sole server takes its own unreleased lease back at once
	// instead of waiting for it to expire.
	Identity string
	// Namespace and LeaseName locate the Lease.
	Namespace string
	LeaseName string
	// LeaseDuration is how long others wait after the holder's last renewal before they take
	// over; the Lease stores it in whole seconds, so it must be at least 1s. RenewDeadline is
	// how long the holder retries renewing before it gives up leading; RetryPeriod is the
	// interval between tries.
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
	// RestartBackoff is the first delay before a failed controller runs again; it doubles
	// on each consecutive failure, up to a minute.
	RestartBackoff time.Duration
	// Controllers run while this server leads.
	Controllers []Controller
	// Log receives leadership changes and controller failures.
	Log logrus.FieldLogger
}

// Runner is the component that contends for the lease and runs the controllers while it
// holds it. Losing the lease stops the controllers and contends again; unlike
// kube-controller-manager, it never ends the process.
type Runner struct {
	cfg Config
	log logrus.FieldLogger

	mu      sync.Mutex
	cancel  context.CancelFunc // ends the controllers, then the election
	exited  chan struct{}
	leading bool // this runner's controllers run
	decided bool // it has led, or seen another holder, at least once
	// initialized: the Initializer controllers of the first term this runner led were
	// initialized (or it never led before being decided).
	initialized bool
	holder      string // the last holder seen, for Ready's message
	// running counts the terms whose controllers are still running; see lead.
	running sync.WaitGroup
}

// NewRunner returns a Runner of cfg; Start checks cfg.
func NewRunner(cfg Config) *Runner {
	if cfg.Namespace == "" {
		cfg.Namespace = DefaultNamespace
	}
	if cfg.LeaseName == "" {
		cfg.LeaseName = DefaultLeaseName
	}
	if cfg.LeaseDuration == 0 {
		cfg.LeaseDuration = DefaultLeaseDuration
	}
	if cfg.RenewDeadline == 0 {
		cfg.RenewDeadline = DefaultRenewDeadline
	}
	if cfg.RetryPeriod == 0 {
		cfg.RetryPeriod = DefaultRetryPeriod
	}
	if cfg.RestartBackoff == 0 {
		cfg.RestartBackoff = DefaultRestartBackoff
	}
	log := cfg.Log
	if log == nil {
		log = logrus.StandardLogger()
	}
	return &Runner{cfg: cfg, log: log, exited: make(chan struct{})}
}

// Name implements component.Component.
func (r *Runner) Name() string { return "k1s controllers" }

func (r *Runner) lease() string { return r.cfg.Namespace + "/" + r.cfg.LeaseName }

// term is one run of the elector: from contending to losing (or releasing) the lease.
type term struct {
	ended bool // guarded by Runner.mu: no controllers may start for this term any more
}

// Start implements component.Component: it begins contending for the lease and returns.
func (r *Runner) Start(ctx context.Context) error {
	if r.cfg.Identity == "" {
		return errors.New("k1s controllers: no identity for the leader lease (the node name)")
	}
	if r.cfg.LeaseDuration%time.Second != 0 {
		return fmt.Errorf("k1s controllers: lease duration %s is not whole seconds, which is all a Lease stores", r.cfg.LeaseDuration)
	}
	if r.cfg.Client == nil {
		return errors.New("k1s controllers: no API client")
	}
	client, err := r.cfg.Client()
	if err != nil {
		return fmt.Errorf("k1s controllers: API client: %w", err)
	}
	// On Stop the controllers end first (workCtx), the election after them (electCtx): with
	// ReleaseOnCancel the lease is released when the election ends, so another server does
	// not start its controllers while this one's still run. (A lease lost to a failed renewal
	// is released by client-go as the controllers are cancelled: they may overlap another
	// server's for the moments they take to stop; every controller here is idempotent.)
	workCtx, stopWork := context.WithCancel(ctx)
	electCtx, stopElection := context.WithCancel(context.WithoutCancel(ctx))
	first := &term{}
	elector, err := r.newElector(workCtx, client, first)
	if err != nil {
		stopWork()
		stopElection()
		return fmt.Errorf("k1s controllers: %w", err)
	}
	r.mu.Lock()
	r.cancel = stopWork
	r.mu.Unlock()

	go func() {
		<-workCtx.Done()
		// lead checks workCtx under mu: once this empty critical section has passed, no
		// controllers start any more and running only goes down.
		r.mu.Lock()
		r.mu.Unlock()
		r.running.Wait()
		stopElection()
	}()
	go r.contend(workCtx, electCtx, client, elector, first)
	return nil
}

// contend runs the election until the runner stops, again after each lost lease.
func (r *Runner) contend(workCtx, electCtx context.Context, client kubernetes.Interface, elector *leaderelection.LeaderElector, t *term) {
	defer close(r.exited)
	for {
		elector.Run(electCtx)
		r.mu.Lock()
		t.ended = true
		r.mu.Unlock()
		r.running.Wait()
		if workCtx.Err() != nil {
			return
		}
		t = &term{}
		var err error
		if elector, err = r.newElector(workCtx, client, t); err != nil {
			// Start built one from the same configuration; this cannot fail.
			r.log.WithError(err).Error("cannot contend for the lease again")
			return
		}
	}
}

func (r *Runner) newElector(workCtx context.Context, client kubernetes.Interface, t *term) (*leaderelection.LeaderElector, error) {
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: r.cfg.Namespace, Name: r.cfg.LeaseName},
		Client:     client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: r.cfg.Identity},
		Labels:     map[string]string{join.ManagedByLabel: join.FieldManager},
	}
	return leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		Name:            r.cfg.LeaseName,
		LeaseDuration:   r.cfg.LeaseDuration,
		RenewDeadline:   r.cfg.RenewDeadline,
		RetryPeriod:     r.cfg.RetryPeriod,
		ReleaseOnCancel: true,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(leaderCtx context.Context) { r.lead(workCtx, leaderCtx, t) },
			// lead and contend report the end of leading: this is also called when this
			// runner never led.
			OnStoppedLeading: func() {},
			OnNewLeader:      r.observe,
		},
	})
}

// observe records a holder the elector has seen.
func (r *Runner) observe(holder string) {
	r.mu.Lock()
	r.holder = holder
	other := holder != "" && holder != r.cfg.Identity
	if other {
		r.decided = true
	}
	r.mu.Unlock()
	if other {
		r.log.Infof("lease %s is held by %s; standing by", r.lease(), holder)
	}
}

// lead runs the controllers until leadership ends (leaderCtx) or the runner stops (workCtx).
func (r *Runner) lead(workCtx, leaderCtx context.Context, t *term) {
	r.mu.Lock()
	// The elector calls this in a goroutine of its own, which may start after the term or
	// the runner has ended; then nothing waits for these controllers, so they must not start.
	if t.ended || workCtx.Err() != nil {
		r.mu.Unlock()
		return
	}
	r.running.Add(1)
	defer r.running.Done()
	ctx, cancel := context.WithCancel(leaderCtx)
	defer cancel()
	defer context.AfterFunc(workCtx, cancel)()
	r.leading, r.decided, r.holder = true, true, r.cfg.Identity
	r.mu.Unlock()

	names := make([]string, 0, len(r.cfg.Controllers))
	for _, c := range r.cfg.Controllers {
		names = append(names, c.Name())
	}
	r.log.Infof("leading %s as %s: starting controllers %s", r.lease(), r.cfg.Identity, strings.Join(names, ", "))
	var wg sync.WaitGroup
	for _, c := range r.cfg.Controllers {
		wg.Go(func() { r.runController(ctx, c) })
	}
	wg.Wait()

	r.mu.Lock()
	r.leading = false
	r.mu.Unlock()
	if workCtx.Err() != nil {
		r.log.Infof("stopped controllers; releasing %s", r.lease())
	} else {
		r.log.Infof("lost %s: stopped controllers; contending again", r.lease())
	}
}

// runController runs c until ctx ends, restarting it with backoff when it fails: a broken
// controller must not take the server down.
func (r *Runner) runController(ctx context.Context, c Controller) {
	delay := r.cfg.RestartBackoff
	for {
		began := time.Now()
		err := runSafely(ctx, c)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("returned while still leading")
		}
		if time.Since(began) >= maxRestartBackoff {
			delay = r.cfg.RestartBackoff
		}
		r.log.WithError(err).Warnf("controller %s failed; restarting in %s", c.Name(), delay)
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		delay = min(2*delay, maxRestartBackoff)
	}
}

// runSafely runs c, turning a panic into an error.
func runSafely(ctx context.Context, c Controller) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v\n%s", p, debug.Stack())
		}
	}()
	return c.Run(ctx)
}

// Ready implements component.Component: nil once the election is decided from this runner's
// view (it leads and runs its controllers, or it has seen another server hold the lease).
func (r *Runner) Ready(context.Context) error {
	select {
	case <-r.exited:
		return errors.New("k1s controllers have stopped")
	default:
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.decided && r.leading && !r.initialized:
		// The first term's controllers publish what the rest of the start needs (cluster-info
		// for the nodes' join): the runner is ready once they have.
		for _, c := range r.cfg.Controllers {
			if i, ok := c.(Initializer); ok && !i.Initialized() {
				return fmt.Errorf("leading the %s lease: waiting for %s", r.lease(), c.Name())
			}
		}
		r.initialized = true
		return nil
	case r.decided:
		return nil
	case r.holder == r.cfg.Identity:
		return fmt.Errorf("holding the %s lease, starting the controllers", r.lease())
	default:
		return fmt.Errorf("waiting for the %s lease", r.lease())
	}
}

// IsLeader reports whether this runner holds the lease and runs its controllers.
func (r *Runner) IsLeader() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.leading
}

// Exited implements component.Component.
func (r *Runner) Exited() <-chan struct{} { return r.exited }

// Stop implements component.Component: it stops the controllers, then releases the lease so
// that another server takes over at once, and waits for both.
func (r *Runner) Stop() error {
	r.mu.Lock()
	cancel := r.cancel
	r.mu.Unlock()
	if cancel == nil {
		return nil // never started
	}
	cancel()
	<-r.exited
	return nil
}
