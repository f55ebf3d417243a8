//go:build e2e

package e2e

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/k1s-io/k1s/internal/controllers"
	"github.com/k1s-io/k1s/internal/logging/logtest"
)

// TestLeaderElection: two leader-elected runners against one running cluster's API elect
// exactly one; stopping the leader hands the work over within the lease period. The lease is
// the test's own, so the server's runner is not disturbed.
func TestLeaderElection(t *testing.T) {
	const (
		leaseName = "k1s-e2e-leader-test"
		// Whole seconds (a Lease stores no less), and well over the one-second granularity
		// of its renew time that standbys watch.
		leaseDuration = 4 * time.Second
	)
	s := newServer(t)
	s.start()
	s.waitReady(2 * time.Minute)
	client := s.client()
	t.Cleanup(func() {
		_ = client.CoordinationV1().Leases(metav1.NamespaceSystem).Delete(context.Background(), leaseName, metav1.DeleteOptions{})
	})

	log := logtest.New(t)
	var active, most atomic.Int32 // controllers running at once across both runners
	start := func(identity string) (*controllers.Runner, *leaderTestController) {
		c := &leaderTestController{active: &active, most: &most}
		r := controllers.NewRunner(controllers.Config{
			Client:        func() (kubernetes.Interface, error) { return client, nil },
			Identity:      identity,
			LeaseName:     leaseName,
			LeaseDuration: leaseDuration,
			RenewDeadline: 2 * time.Second,
			RetryPeriod:   500 * time.Millisecond,
			Controllers:   []controllers.Controller{c},
			Log:           log.WithField("runner", identity),
		})
		if err := r.Start(t.Context()); err != nil {
			t.Fatalf("starting runner %s: %v", identity, err)
		}
		t.Cleanup(func() { _ = r.Stop() })
		return r, c
	}
	a, ca := start("e2e-a")
	b, cb := start("e2e-b")

	leaderWait(t, 30*time.Second, "one runner leads and both are ready", func() bool {
		return a.IsLeader() != b.IsLeader() && (ca.running.Load() || cb.running.Load()) &&
			a.Ready(t.Context()) == nil && b.Ready(t.Context()) == nil
	})
	leader, follower, followerWork, leaderID, followerID := a, b, cb, "e2e-a", "e2e-b"
	if b.IsLeader() {
		leader, follower, followerWork, leaderID, followerID = b, a, ca, "e2e-b", "e2e-a"
	}
	if got := leaseHolder(t, client, leaseName); got != leaderID {
		t.Fatalf("lease held by %q, want the leader %q", got, leaderID)
	}
	if followerWork.runs.Load() != 0 {
		t.Fatal("the standby ran its controller")
	}

	stopped := time.Now()
	if err := leader.Stop(); err != nil {
		t.Fatalf("stopping the leader: %v", err)
	}
	leaderWait(t, leaseDuration+2*time.Second, "the standby takes over", func() bool {
		return follower.IsLeader() && followerWork.running.Load()
	})
	t.Logf("handover took %s", time.Since(stopped).Round(time.Millisecond))
	if got := leaseHolder(t, client, leaseName); got != followerID {
		t.Errorf("lease held by %q after the handover, want %q", got, followerID)
	}
	if n := most.Load(); n != 1 {
		t.Errorf("%d controllers ran at once, want 1", n)
	}
}

// leaderTestController counts its runs and runs until stopped.
type leaderTestController struct {
	active, most *atomic.Int32
	runs         atomic.Int32
	running      atomic.Bool
}

func (*leaderTestController) Name() string { return "e2e-counter" }

func (c *leaderTestController) Run(ctx context.Context) error {
	c.runs.Add(1)
	n := c.active.Add(1)
	defer c.active.Add(-1)
	for {
		if m := c.most.Load(); n <= m || c.most.CompareAndSwap(m, n) {
			break
		}
	}
	c.running.Store(true)
	defer c.running.Store(false)
	<-ctx.Done()
	return nil
}

func leaseHolder(t *testing.T, client kubernetes.Interface, name string) string {
	t.Helper()
	lease, err := client.CoordinationV1().Leases(metav1.NamespaceSystem).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("reading lease %s: %v", name, err)
	}
	return ptr.Deref(lease.Spec.HolderIdentity, "")
}

// leaderWait polls cond until it holds, failing the test after timeout.
func leaderWait(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
