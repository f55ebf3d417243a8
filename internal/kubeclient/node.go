package kubeclient

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
)

// AnnotateNode sets (or, for a nil value, removes) annotations on the node's own Node object,
// where add-ons publish what the node knows and the cluster side reads it. It retries until
// ctx ends: the kubelet may not have registered the node yet.
func AnnotateNode(ctx context.Context, client kubernetes.Interface, node string, annotations map[string]*string, log logrus.FieldLogger) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": annotations}})
	if err != nil {
		return err
	}
	return Retry(ctx, log, "annotating node "+node, func(ctx context.Context) error {
		_, err := client.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, patch, metav1.PatchOptions{})
		return err
	})
}

// Retry calls try every second until it succeeds, or ctx ends (its only error). A failure is
// expected there — a starting node waiting for its Node to be registered, or for an add-on's
// RBAC the server has not applied yet — so it is a debug line ("<what>: <error> (retrying)"),
// not a warning.
func Retry(ctx context.Context, log logrus.FieldLogger, what string, try func(context.Context) error) error {
	return wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		err := try(ctx)
		if err != nil {
			log.Debugf("%s: %v (retrying)", what, err)
		}
		return err == nil, nil
	})
}

// WaitNode watches the node's Node object until done says it is as wanted, or done or ctx
// fails. It returns the moment the change is written, where a poll would see it up to a
// period later. A failing List or watch is retried with client-go's backoff (0.8 s,
// doubling).
func WaitNode(ctx context.Context, client kubernetes.Interface, node string, done func(*corev1.Node) (bool, error)) error {
	byName := fields.OneTermEqualSelector(metav1.ObjectNameField, node).String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			opts.FieldSelector = byName
			return client.CoreV1().Nodes().List(ctx, opts)
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			opts.FieldSelector = byName
			return client.CoreV1().Nodes().Watch(ctx, opts)
		},
	}
	// The wrapper lets a fake clientset (tests) say it cannot stream its initial list.
	_, err := watchtools.UntilWithSync(ctx, cache.ToListWatcherWithWatchListSemantics(lw, client), &corev1.Node{}, nil, func(ev watch.Event) (bool, error) {
		n, ok := ev.Object.(*corev1.Node)
		if !ok || n.Name != node || ev.Type == watch.Deleted {
			return false, nil
		}
		return done(n)
	})
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// WaitPodCIDR returns the node's pod CIDR once the controller-manager has allocated it,
// telling waiting what it still waits for. On a first start the node's Ready condition waits
// on it.
func WaitPodCIDR(ctx context.Context, client kubernetes.Interface, node string, waiting func(string)) (*net.IPNet, error) {
	waiting(fmt.Sprintf("node %s to register", node))
	var cidr *net.IPNet
	err := WaitNode(ctx, client, node, func(n *corev1.Node) (bool, error) {
		if n.Spec.PodCIDR == "" {
			waiting(fmt.Sprintf("a pod CIDR for node %s from the controller-manager", node))
			return false, nil
		}
		_, c, err := net.ParseCIDR(n.Spec.PodCIDR)
		if err != nil {
			return false, fmt.Errorf("node %s has a malformed pod CIDR %q", node, n.Spec.PodCIDR)
		}
		cidr = c
		return true, nil
	})
	return cidr, err
}
