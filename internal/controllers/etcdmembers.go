package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/k1s-io/k1s/internal/join"
)

// EtcdMemberFinalizer holds a server's Node until its etcd member is removed: deleting the
// Node of a server removes the server from the cluster's etcd.
const EtcdMemberFinalizer = "etcd.k1s.io/member"

// EtcdMember is an etcd member, by ID, name (a server's member name is its node name) and the
// hosts of its peer URLs.
type EtcdMember struct {
	ID        uint64
	Name      string
	PeerHosts []string
}

// EtcdMemberAPI lists and removes the cluster's etcd members.
type EtcdMemberAPI interface {
	List(ctx context.Context) ([]EtcdMember, error)
	Remove(ctx context.Context, id uint64) error
}

// EtcdMemberReconciler puts EtcdMemberFinalizer on the Node of every etcd member (the Node of
// the member's name and address), and when such a Node is deleted, removes its member (never
// the last one), its entry in the etcd members ConfigMap, and then the finalizer.
type EtcdMemberReconciler struct {
	Client  func() (kubernetes.Interface, error)
	Members func() (EtcdMemberAPI, error)
	// AddFinalizers is off on a single server: it only releases Nodes that still carry the
	// finalizer (restored from a cluster's snapshot).
	AddFinalizers bool
	Log           logrus.FieldLogger
}

// Name implements Controller.
func (r *EtcdMemberReconciler) Name() string { return "etcd member reconciler" }

// etcdAction is what the reconciler does about one Node.
type etcdAction int

const (
	etcdNothing etcdAction = iota
	etcdAddFinalizer
	// etcdRemoveMember removes the member, then the finalizer.
	etcdRemoveMember
	// etcdRelease removes the finalizer only: the member is gone already, or it is the last.
	etcdRelease
)

// decideEtcd is the reconciler's decision for node, given the members.
func decideEtcd(node *corev1.Node, members []EtcdMember, addFinalizers bool) (etcdAction, *EtcdMember) {
	// A member's Node has its name and one of its addresses: an agent that registers a Node
	// under a control-plane-only server's name does not make it that server's.
	i := slices.IndexFunc(members, func(m EtcdMember) bool {
		return m.Name == node.Name && slices.ContainsFunc(node.Status.Addresses, func(a corev1.NodeAddress) bool {
			return a.Type == corev1.NodeInternalIP && slices.Contains(m.PeerHosts, a.Address)
		})
	})
	has := slices.Contains(node.Finalizers, EtcdMemberFinalizer)
	if node.DeletionTimestamp == nil {
		if i >= 0 && !has && addFinalizers {
			return etcdAddFinalizer, &members[i]
		}
		return etcdNothing, nil
	}
	switch {
	case !has:
		return etcdNothing, nil
	case i < 0 || len(members) == 1:
		return etcdRelease, nil
	default:
		return etcdRemoveMember, &members[i]
	}
}

// Run implements Controller.
func (r *EtcdMemberReconciler) Run(ctx context.Context) error {
	client, err := r.Client()
	if err != nil {
		return err
	}
	members, err := r.Members()
	if err != nil {
		return err
	}
	if c, ok := members.(io.Closer); ok {
		defer c.Close()
	}
	factory := informers.NewSharedInformerFactory(client, 5*time.Minute)
	nodes := factory.Core().V1().Nodes()
	queue := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	defer queue.ShutDown()
	enqueue := func(obj any) {
		if n, ok := obj.(*corev1.Node); ok {
			queue.Add(n.Name)
		}
	}
	if _, err := nodes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue, UpdateFunc: func(_, o any) { enqueue(o) },
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), nodes.Informer().HasSynced) {
		return ctx.Err()
	}
	go func() {
		<-ctx.Done()
		queue.ShutDown()
	}()
	for {
		name, quit := queue.Get()
		if quit {
			return nil
		}
		node, err := nodes.Lister().Get(name)
		if err == nil {
			err = r.reconcile(ctx, client, members, node)
		} else if apierrors.IsNotFound(err) {
			err = nil
		}
		if err != nil {
			r.Log.Infof("etcd member of node %s: %v (retrying)", name, err)
			queue.AddRateLimited(name)
		} else {
			queue.Forget(name)
		}
		queue.Done(name)
	}
}

func (r *EtcdMemberReconciler) reconcile(ctx context.Context, client kubernetes.Interface, api EtcdMemberAPI, node *corev1.Node) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	members, err := api.List(ctx)
	if err != nil {
		return fmt.Errorf("listing etcd members: %w", err)
	}
	action, member := decideEtcd(node, members, r.AddFinalizers)
	switch action {
	case etcdAddFinalizer:
		return patchFinalizers(ctx, client, node, append(slices.Clone(node.Finalizers), EtcdMemberFinalizer))
	case etcdRemoveMember:
		if err := api.Remove(ctx, member.ID); err != nil {
			return fmt.Errorf("removing etcd member %x: %w", member.ID, err)
		}
		r.Log.Infof("node %s was deleted: removed its etcd member %x", node.Name, member.ID)
		fallthrough
	case etcdRelease:
		if action == etcdRelease && len(members) == 1 && members[0].Name == node.Name {
			r.Log.Infof("node %s was deleted: its etcd member is the cluster's last, and stays", node.Name)
		}
		if err := forgetEtcdMember(ctx, client, node.Name); err != nil {
			return err
		}
		return patchFinalizers(ctx, client, node, slices.DeleteFunc(slices.Clone(node.Finalizers), func(f string) bool { return f == EtcdMemberFinalizer }))
	}
	return nil
}

// patchFinalizers sets node's finalizers, failing on a concurrent change (the next event
// retries).
func patchFinalizers(ctx context.Context, client kubernetes.Interface, node *corev1.Node, finalizers []string) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"finalizers": finalizers, "resourceVersion": node.ResourceVersion}})
	if err != nil {
		return err
	}
	_, err = client.CoreV1().Nodes().Patch(ctx, node.Name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: join.FieldManager})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// forgetEtcdMember removes a server's entry from the etcd members ConfigMap.
func forgetEtcdMember(ctx context.Context, client kubernetes.Interface, name string) error {
	patch, err := json.Marshal(map[string]any{"data": map[string]any{name: nil}})
	if err != nil {
		return err
	}
	_, err = client.CoreV1().ConfigMaps(metav1.NamespaceSystem).Patch(ctx, join.EtcdMembersConfigMap, types.MergePatchType, patch, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
