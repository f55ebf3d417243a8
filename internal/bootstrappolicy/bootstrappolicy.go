// Package bootstrappolicy writes the apiserver's built-in policy objects: upstream's bootstrap
// RBAC roles and bindings, and the system PriorityClasses.
//
// The apiserver's own post-start hooks for them (UpstreamHooks) each sleep a second before
// their first attempt (wait.Poll), then reconcile the objects one request at a time. On a
// fresh cluster that holds /healthz and /readyz, and so the controller-manager, the scheduler
// and every joining node, for about 1.7 s after the apiserver serves. k1s disables those two
// hooks and runs Ensure in one of its own instead: upstream's reconciliation on upstream's
// objects, several at a time, which is also what a second apiserver of an HA cluster does at
// the same moment (a create that loses a race reconciles again).
//
// What the RBAC hook does besides, and Ensure does not: before reconciling, it migrates the
// aggregated roles of clusters made before Kubernetes 1.9 and the discovery binding of those
// made before 1.14. No k1s cluster is that old.
package bootstrappolicy

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/component-helpers/auth/rbac/reconciliation"
	schedulingv1 "k8s.io/kubernetes/pkg/apis/scheduling/v1"
	"k8s.io/kubernetes/plugin/pkg/auth/authorizer/rbac/bootstrappolicy"
)

// UpstreamHooks are the apiserver's post-start hooks whose work Ensure does.
func UpstreamHooks() []string {
	return []string{"rbac/bootstrap-roles", "scheduling/bootstrap-system-priority-classes"}
}

// Workers is how many objects Ensure reconciles at a time: enough to keep a small machine's
// apiserver and etcd busy, few enough to leave the requests of the components starting beside
// it room in the apiserver's priority-and-fairness queues.
const Workers = 8

// Result counts what Ensure changed.
type Result struct {
	Created, Updated int
}

// Ensure creates, or adds what is missing to, every object UpstreamHooks write, as they would:
// a role or binding annotated rbac.authorization.kubernetes.io/autoupdate=false is left as it
// is. The policy is read from upstream when Ensure is called, so it follows the process's
// feature gates as the hooks do.
func Ensure(ctx context.Context, client kubernetes.Interface, workers int) (Result, error) {
	items := policyItems(client)
	var created, updated atomic.Int32
	var mu sync.Mutex
	var errs []error
	workqueue.ParallelizeUntil(ctx, workers, len(items), func(i int) {
		var op reconciliation.ReconcileOperation
		// As the hooks do: a conflict, or an apiserver briefly refusing writes, is retried.
		err := retry.OnError(retry.DefaultBackoff, func(err error) bool {
			return apierrors.IsConflict(err) || apierrors.IsServiceUnavailable(err)
		}, func() error {
			var err error
			op, err = items[i].reconcile(ctx)
			return err
		})
		switch {
		case err != nil:
			mu.Lock()
			errs = append(errs, fmt.Errorf("%s: %w", items[i].name, err))
			mu.Unlock()
		case op == reconciliation.ReconcileCreate:
			created.Add(1)
		case op == reconciliation.ReconcileUpdate, op == reconciliation.ReconcileRecreate:
			updated.Add(1)
		}
	})
	result := Result{Created: int(created.Load()), Updated: int(updated.Load())}
	if len(errs) > 0 {
		// One cause is enough to act on; they usually share it.
		return result, fmt.Errorf("%d of %d bootstrap policy objects failed, first %w", len(errs), len(items), errs[0])
	}
	return result, ctx.Err()
}

type item struct {
	name      string
	reconcile func(context.Context) (reconciliation.ReconcileOperation, error)
}

// policyItems is the work of the rbac/bootstrap-roles and
// scheduling/bootstrap-system-priority-classes hooks, one item per object.
func policyItems(client kubernetes.Interface) []item {
	rbac := client.RbacV1()
	namespaces := client.CoreV1().Namespaces()
	var items []item
	role := func(name string, opts reconciliation.ReconcileRoleOptions) {
		opts.Confirm = true
		items = append(items, item{name, func(context.Context) (reconciliation.ReconcileOperation, error) {
			r, err := opts.Run()
			if err != nil || r.Protected {
				return reconciliation.ReconcileNone, err
			}
			return r.Operation, nil
		}})
	}
	binding := func(name string, opts reconciliation.ReconcileRoleBindingOptions) {
		opts.Confirm = true
		items = append(items, item{name, func(context.Context) (reconciliation.ReconcileOperation, error) {
			r, err := opts.Run()
			if err != nil || r.Protected {
				return reconciliation.ReconcileNone, err
			}
			return r.Operation, nil
		}})
	}
	for _, r := range append(bootstrappolicy.ClusterRoles(), bootstrappolicy.ControllerRoles()...) {
		role("clusterrole/"+r.Name, reconciliation.ReconcileRoleOptions{
			Role:   reconciliation.ClusterRoleRuleOwner{ClusterRole: &r},
			Client: reconciliation.ClusterRoleModifier{Client: rbac.ClusterRoles()},
		})
	}
	for _, b := range append(bootstrappolicy.ClusterRoleBindings(), bootstrappolicy.ControllerRoleBindings()...) {
		binding("clusterrolebinding/"+b.Name, reconciliation.ReconcileRoleBindingOptions{
			RoleBinding: reconciliation.ClusterRoleBindingAdapter{ClusterRoleBinding: &b},
			Client:      reconciliation.ClusterRoleBindingClientAdapter{Client: rbac.ClusterRoleBindings()},
		})
	}
	for namespace, roles := range bootstrappolicy.NamespaceRoles() {
		for _, r := range roles {
			role("role/"+namespace+"/"+r.Name, reconciliation.ReconcileRoleOptions{
				Role:   reconciliation.RoleRuleOwner{Role: &r},
				Client: reconciliation.RoleModifier{Client: rbac, NamespaceClient: namespaces},
			})
		}
	}
	for namespace, bindings := range bootstrappolicy.NamespaceRoleBindings() {
		for _, b := range bindings {
			binding("rolebinding/"+namespace+"/"+b.Name, reconciliation.ReconcileRoleBindingOptions{
				RoleBinding: reconciliation.RoleBindingAdapter{RoleBinding: &b},
				Client:      reconciliation.RoleBindingClientAdapter{Client: rbac, NamespaceClient: namespaces},
			})
		}
	}
	classes := client.SchedulingV1().PriorityClasses()
	for _, pc := range schedulingv1.SystemPriorityClasses() {
		// The hook only creates them: their value is fixed, and an existing one is kept.
		items = append(items, item{"priorityclass/" + pc.Name, func(ctx context.Context) (reconciliation.ReconcileOperation, error) {
			_, err := classes.Get(ctx, pc.Name, metav1.GetOptions{})
			if !apierrors.IsNotFound(err) {
				return reconciliation.ReconcileNone, err
			}
			_, err = classes.Create(ctx, pc, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				return reconciliation.ReconcileNone, nil
			}
			return reconciliation.ReconcileCreate, err
		}})
	}
	return items
}
