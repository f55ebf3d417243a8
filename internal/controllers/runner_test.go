package controllers

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	coordinationclient "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/utils/ptr"

	"github.com/k1s-io/k1s/internal/component"
	"github.com/k1s-io/k1s/internal/logging/logtest"
)

var _ component.Component = (*Runner)(nil)

// Test timings. A Lease's renew time has whole seconds, so a standby sees it change only
// once a second: the lease must be well over a second, or a standby would take a healthy
// holder's lease. 4s also leaves a holder whose renewals fail (RetryPeriod+RenewDeadline,
// 1.2s) time to stop its controllers before a standby may take over.
const (
	testLease = 4 * time.Second
	testRenew = time.Second
	testRetry = 200 * time.Millisecond
)

func testLog(t *testing.T) *logrus.Logger { return logtest.New(t) }

// poll waits until cond holds, failing the test after timeout.
func pollWithin(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func poll(t *testing.T, what string, cond func() bool) { pollWithin(t, 10*time.Second, what, cond) }

// counter is shared by the controllers of all runners in a test: how many run at once, and
// the most that ever did.
type counter struct {
	active, most atomic.Int32
}

func (c *counter) enter() {
	n := c.active.Add(1)
	for {
		m := c.most.Load()
		if n <= m || c.most.CompareAndSwap(m, n) {
			return
		}
	}
}

// countingController runs until stopped, after failing (or panicking) a given number of
// times.
type countingController struct {
	shared   *counter
	runs     atomic.Int32
	running  atomic.Bool
	failures atomic.Int32
	panics   atomic.Int32
}

func (*countingController) Name() string { return "counting" }

func (c *countingController) Run(ctx context.Context) error {
	c.runs.Add(1)
	c.shared.enter()
	defer c.shared.active.Add(-1)
	if c.panics.Add(-1) >= 0 {
		panic("test panic")
	}
	if c.failures.Add(-1) >= 0 {
		return errors.New("test failure")
	}
	c.running.Store(true)
	defer c.running.Store(false)
	<-ctx.Done()
	return nil
}

func newTestRunner(t *testing.T, identity string, client kubernetes.Interface, c Controller) *Runner {
	t.Helper()
	r := NewRunner(Config{
		Client:         func() (kubernetes.Interface, error) { return client, nil },
		Identity:       identity,
		LeaseDuration:  testLease,
		RenewDeadline:  testRenew,
		RetryPeriod:    testRetry,
		RestartBackoff: 10 * time.Millisecond,
		Controllers:    []Controller{c},
		Log:            testLog(t).WithField("server", identity),
	})
	if err := r.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Stop() })
	return r
}

func holder(t *testing.T, client kubernetes.Interface) string {
	t.Helper()
	lease, err := client.CoordinationV1().Leases(DefaultNamespace).Get(context.Background(), DefaultLeaseName, metav1.GetOptions{})
	if err != nil {
		return ""
	}
	return ptr.Deref(lease.Spec.HolderIdentity, "")
}

func TestRunnerElectsOneAndHandsOverOnStop(t *testing.T) {
	t.Parallel()
	client := fake.NewClientset()
	shared := &counter{}
	ca, cb := &countingController{shared: shared}, &countingController{shared: shared}
	a := newTestRunner(t, "server-a", client, ca)
	b := newTestRunner(t, "server-b", client, cb)

	poll(t, "one runner leads and runs its controller", func() bool {
		return a.IsLeader() != b.IsLeader() && (ca.running.Load() || cb.running.Load())
	})
	poll(t, "both runners ready", func() bool { return a.Ready(t.Context()) == nil && b.Ready(t.Context()) == nil })
	leader, follower, followerController, leaderID := a, b, cb, "server-a"
	if b.IsLeader() {
		leader, follower, followerController, leaderID = b, a, ca, "server-b"
	}
	if got := holder(t, client); got != leaderID {
		t.Fatalf("lease held by %q, want the leader %q", got, leaderID)
	}
	if followerController.runs.Load() != 0 {
		t.Fatal("the standby ran its controller")
	}

	stopped := time.Now()
	if err := leader.Stop(); err != nil {
		t.Fatalf("stopping the leader: %v", err)
	}
	select {
	case <-leader.Exited():
	default:
		t.Fatal("Stop returned before the runner exited")
	}
	if got := holder(t, client); got == leaderID {
		t.Fatal("the stopped leader still holds the lease: it was not released")
	}
	// The lease is released on stop, so the handover takes a retry period, not a lease.
	pollWithin(t, testLease, "the standby takes over", func() bool {
		return follower.IsLeader() && followerController.running.Load()
	})
	t.Logf("handover took %s", time.Since(stopped).Round(time.Millisecond))
	if n := shared.most.Load(); n != 1 {
		t.Errorf("%d controllers ran at once, want 1", n)
	}
}

// flakyClient's lease requests fail while down is set: a holder that cannot reach the API.
type flakyClient struct {
	kubernetes.Interface
	down *atomic.Bool
}

func (c flakyClient) CoordinationV1() coordinationclient.CoordinationV1Interface {
	return flakyCoordination{c.Interface.CoordinationV1(), c.down}
}

type flakyCoordination struct {
	coordinationclient.CoordinationV1Interface
	down *atomic.Bool
}

func (c flakyCoordination) Leases(namespace string) coordinationclient.LeaseInterface {
	return flakyLeases{c.CoordinationV1Interface.Leases(namespace), c.down}
}

type flakyLeases struct {
	coordinationclient.LeaseInterface
	down *atomic.Bool
}

var errDown = apierrors.NewServiceUnavailable("test: API unreachable")

func (l flakyLeases) Get(ctx context.Context, name string, opts metav1.GetOptions) (*coordinationv1.Lease, error) {
	if l.down.Load() {
		return nil, errDown
	}
	return l.LeaseInterface.Get(ctx, name, opts)
}

func (l flakyLeases) Create(ctx context.Context, lease *coordinationv1.Lease, opts metav1.CreateOptions) (*coordinationv1.Lease, error) {
	if l.down.Load() {
		return nil, errDown
	}
	return l.LeaseInterface.Create(ctx, lease, opts)
}

func (l flakyLeases) Update(ctx context.Context, lease *coordinationv1.Lease, opts metav1.UpdateOptions) (*coordinationv1.Lease, error) {
	if l.down.Load() {
		return nil, errDown
	}
	return l.LeaseInterface.Update(ctx, lease, opts)
}

func TestRunnerContendsAgainAfterLosingTheLease(t *testing.T) {
	t.Parallel()
	client := fake.NewClientset()
	shared := &counter{}
	var down atomic.Bool
	ca, cb := &countingController{shared: shared}, &countingController{shared: shared}
	a := newTestRunner(t, "server-a", flakyClient{client, &down}, ca)
	poll(t, "a leads", func() bool { return a.IsLeader() && ca.running.Load() })
	b := newTestRunner(t, "server-b", client, cb)
	poll(t, "b sees a's lease", func() bool { return b.Ready(t.Context()) == nil })

	down.Store(true)
	lost := time.Now()
	pollWithin(t, testRetry+testRenew+2*time.Second, "a gives up leading", func() bool { return !a.IsLeader() && !ca.running.Load() })
	pollWithin(t, testLease+2*time.Second, "b takes over", func() bool { return b.IsLeader() && cb.running.Load() })
	t.Logf("failover took %s", time.Since(lost).Round(time.Millisecond))
	select {
	case <-a.Exited():
		t.Fatal("a exited after losing the lease; it must contend again")
	default:
	}

	down.Store(false)
	pollWithin(t, testLease, "a contends again and sees b's lease", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.holder == "server-b"
	})
	if a.IsLeader() || a.Ready(t.Context()) != nil {
		t.Fatal("a, standing by, is not ready or thinks it leads")
	}
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	pollWithin(t, testLease, "a leads again", func() bool { return a.IsLeader() && ca.running.Load() })
	if n := shared.most.Load(); n != 1 {
		t.Errorf("%d controllers ran at once, want 1", n)
	}
}

func TestRunnerRestartsFailedControllers(t *testing.T) {
	t.Parallel()
	c := &countingController{shared: &counter{}}
	c.failures.Store(2)
	c.panics.Store(1)
	r := newTestRunner(t, "server-a", fake.NewClientset(), c)
	poll(t, "the controller runs after a panic and two failures", func() bool { return c.running.Load() })
	if n := c.runs.Load(); n != 4 {
		t.Errorf("%d runs, want 4", n)
	}
	if !r.IsLeader() {
		t.Error("the runner stopped leading because of its controller's failures")
	}
}

// A restarted sole server finds its own lease unreleased (it crashed): with the same
// identity it takes it back at once instead of waiting for it to expire.
func TestRunnerTakesBackItsOwnLease(t *testing.T) {
	t.Parallel()
	now := metav1.NewMicroTime(time.Now())
	client := fake.NewClientset(&coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: DefaultNamespace, Name: DefaultLeaseName},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity: ptr.To("server-a"), LeaseDurationSeconds: ptr.To[int32](3600),
			AcquireTime: &now, RenewTime: &now,
		},
	})
	c := &countingController{shared: &counter{}}
	r := newTestRunner(t, "server-a", client, c)
	pollWithin(t, testLease, "the restarted server leads", func() bool { return r.IsLeader() && c.running.Load() })
}

func TestRunnerReadiness(t *testing.T) {
	t.Parallel()
	r := NewRunner(Config{Identity: "server-a"})
	if err := r.Ready(t.Context()); err == nil || !strings.Contains(err.Error(), "waiting for the kube-system/k1s-controllers lease") {
		t.Errorf("Ready before the election: %v", err)
	}
	if err := r.Stop(); err != nil {
		t.Errorf("Stop before Start: %v", err)
	}
}

func TestRunnerRejectsBadConfig(t *testing.T) {
	t.Parallel()
	client := func() (kubernetes.Interface, error) { return fake.NewClientset(), nil }
	for name, cfg := range map[string]Config{
		"no identity":             {Client: client},
		"no client":               {Identity: "a"},
		"sub-second lease":        {Client: client, Identity: "a", LeaseDuration: 1500 * time.Millisecond},
		"renew longer than lease": {Client: client, Identity: "a", RenewDeadline: time.Minute},
		"client fails":            {Identity: "a", Client: func() (kubernetes.Interface, error) { return nil, errors.New("no kubeconfig") }},
	} {
		r := NewRunner(cfg)
		if err := r.Start(t.Context()); err == nil {
			_ = r.Stop()
			t.Errorf("%s: started", name)
		}
	}
}

// publishingController is an Initializer whose first publication the test releases.
type publishingController struct {
	release   chan struct{}
	published atomic.Bool
}

func (*publishingController) Name() string        { return "publisher" }
func (p *publishingController) Initialized() bool { return p.published.Load() }
func (p *publishingController) Run(ctx context.Context) error {
	select {
	case <-p.release:
		p.published.Store(true)
	case <-ctx.Done():
		return nil
	}
	<-ctx.Done()
	return nil
}

// A leading runner is ready only once its publishers have published: the server's own node
// joins with what they publish.
func TestRunnerReadyOnceInitializersArePublished(t *testing.T) {
	t.Parallel()
	p := &publishingController{release: make(chan struct{})}
	r := newTestRunner(t, "server-a", fake.NewClientset(), p)
	poll(t, "leadership", r.IsLeader)
	if err := r.Ready(t.Context()); err == nil || !strings.Contains(err.Error(), "waiting for publisher") {
		t.Fatalf("Ready before the publication: %v", err)
	}
	close(p.release)
	poll(t, "readiness after the publication", func() bool { return r.Ready(t.Context()) == nil })
}
