package localstorage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync/atomic"

	"github.com/sirupsen/logrus"

	"github.com/k1s-io/k1s/internal/kubeclient"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// Node is the node side: it publishes where the node keeps its volumes, makes the directory of
// each volume provisioned on it, and removes it once the volume is deleted. It sees only its
// own volumes (NodeLabel), and the local-storage manifest's admission policy lets it change
// nothing of them but finalizers and annotations.
type Node struct {
	NodeName string
	// Dir is --default-local-storage-path.
	Dir    string
	Client func() (kubernetes.Interface, error)
	Log    logrus.FieldLogger

	ready atomic.Bool
}

func (n *Node) Name() string { return "local storage" }

// Ready is true once the node has published its directory and seen its volumes.
func (n *Node) Ready(context.Context) error {
	if !n.ready.Load() {
		return fmt.Errorf("publishing %s on node %s", n.Dir, n.NodeName)
	}
	return nil
}

// Run works until ctx ends.
func (n *Node) Run(ctx context.Context) error {
	client, err := n.Client()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(n.Dir, 0o700); err != nil {
		return fmt.Errorf("local storage directory (--default-local-storage-path): %w", err)
	}
	// The provisioner reads the node's directory from its Node object.
	if err := kubeclient.AnnotateNode(ctx, client, n.NodeName, map[string]*string{PathAnnotation: &n.Dir}, n.Log); err != nil {
		return err
	}
	if err := n.waitAllowed(ctx, client); err != nil {
		return err
	}
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = labels.Set{NodeLabel: n.NodeName}.String()
	}))
	volumes := factory.Core().V1().PersistentVolumes()
	queue := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	defer queue.ShutDown()
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			queue.Add(key)
		}
	}
	if _, err := volumes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), volumes.Informer().HasSynced) {
		return ctx.Err()
	}
	n.ready.Store(true)
	go func() {
		<-ctx.Done()
		queue.ShutDown()
	}()
	for {
		name, shutdown := queue.Get()
		if shutdown {
			return ctx.Err()
		}
		pv, err := volumes.Lister().Get(name)
		if err == nil {
			err = n.sync(ctx, client, pv)
		} else if apierrors.IsNotFound(err) {
			err = nil
		}
		if err != nil {
			n.Log.Warnf("local storage: volume %s: %v (retrying)", name, err)
			queue.AddRateLimited(name)
		} else {
			queue.Forget(name)
		}
		queue.Done(name)
	}
}

// waitAllowed waits for the local-storage manifest's RBAC, which the server may not have
// applied yet when the node starts: an informer would log every failed list.
func (n *Node) waitAllowed(ctx context.Context, client kubernetes.Interface) error {
	return kubeclient.Retry(ctx, n.Log, "local storage: listing the node's volumes", func(ctx context.Context) error {
		_, err := client.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{Limit: 1, LabelSelector: labels.Set{NodeLabel: n.NodeName}.String()})
		return err
	})
}

func (n *Node) sync(ctx context.Context, client kubernetes.Interface, pv *v1.PersistentVolume) error {
	action, dir, err := Decide(pv, n.Dir)
	if err != nil {
		n.Log.Warn(err)
		return nil
	}
	switch action {
	case Create:
		if _, err := os.Stat(dir); err == nil || !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if err := os.Mkdir(dir, dirMode); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
		// Mkdir's mode is filtered by the umask.
		return os.Chmod(dir, dirMode)
	case Remove:
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
		n.Log.Infof("local storage: removed %s of deleted volume %s", dir, pv.Name)
		return n.dropFinalizer(ctx, client, pv)
	case Release:
		n.Log.Infof("local storage: volume %s was deleted with reclaim policy %s: its data stays in %s", pv.Name, pv.Spec.PersistentVolumeReclaimPolicy, dir)
		return n.dropFinalizer(ctx, client, pv)
	}
	return nil
}

func (n *Node) dropFinalizer(ctx context.Context, client kubernetes.Interface, pv *v1.PersistentVolume) error {
	pv = pv.DeepCopy()
	pv.Finalizers = slices.DeleteFunc(pv.Finalizers, func(f string) bool { return f == Finalizer })
	_, err := client.CoreV1().PersistentVolumes().Update(ctx, pv, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
