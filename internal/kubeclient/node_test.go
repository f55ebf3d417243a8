package kubeclient

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

type waitLog struct {
	mu   sync.Mutex
	seen []string
}

func (w *waitLog) add(s string) { w.mu.Lock(); w.seen = append(w.seen, s); w.mu.Unlock() }

func (w *waitLog) has(sub string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range w.seen {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func TestWaitPodCIDRFollowsTheNode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "other"}, Spec: corev1.NodeSpec{PodCIDR: "10.42.9.0/24"}})
	var log waitLog
	type result struct {
		cidr string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		c, err := WaitPodCIDR(ctx, client, "n1", log.add)
		r := result{err: err}
		if c != nil {
			r.cidr = c.String()
		}
		done <- r
	}()
	nodes := client.CoreV1().Nodes()
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for !ok() {
			select {
			case r := <-done:
				t.Fatalf("returned %+v while waiting for %s", r, what)
			case <-ctx.Done():
				t.Fatalf("timed out waiting for %s", what)
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	waitFor("the registration message", func() bool { return log.has("node n1 to register") })
	n, err := nodes.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor("the pod CIDR message", func() bool { return log.has("a pod CIDR for node n1") })
	n.Spec.PodCIDR = "10.42.3.0/24"
	if _, err := nodes.Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if r.err != nil || r.cidr != "10.42.3.0/24" {
			t.Fatalf("got %q, %v; want 10.42.3.0/24 (not the other node's)", r.cidr, r.err)
		}
	case <-ctx.Done():
		t.Fatal("the pod CIDR was not seen")
	}
}

func TestWaitPodCIDRRefusesAMalformedCIDR(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Spec: corev1.NodeSpec{PodCIDR: "10.42.3.0"}})
	_, err := WaitPodCIDR(ctx, client, "n1", func(string) {})
	if err == nil || !strings.Contains(err.Error(), `malformed pod CIDR "10.42.3.0"`) {
		t.Fatalf("err = %v, want the malformed CIDR named", err)
	}
}

func TestWaitPodCIDREndsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := WaitPodCIDR(ctx, fake.NewClientset(), "n1", func(string) {})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the context's", err)
	}
}
