// Package bootstrappolicy writes the apiserver's built-in policy objects: upstream's bootstrap
// RBAC roles and bindings, and the system PriorityClasses.
//
// The apiserver's own post-start hooks for them (rbac/bootstrap-roles and
// scheduling/bootstrap-system-priority-classes) each sleep a second before their first
// attempt (wait.Poll), then reconcile the objects one request at a time. On a fresh cluster
// that holds /healthz, /livez and /readyz, and so the controller-manager, the scheduler and
// every joining node, for about 1.7 s after the apiserver serves. k1s disables those two
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
	"sort"

	rbacv1 "k8s.io/api/rbac/v1"
	schedulingv1api "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	rbacv1client "k8s.io/client-go/kubernetes/typed/rbac/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/component-helpers/auth/rbac/reconciliation"
	schedulingv1 "k8s.io/kubernetes/pkg/apis/scheduling/v1"
	"k8s.io/kubernetes/plugin/pkg/auth/authorizer/rbac/bootstrappolicy"
)

// Workers is how many objects Ensure reconciles at a time. The apiserver's loopback client is
// in system:masters, which priority and fairness exempts: the bound is Ensure's own.
const Workers = 8

// Result says what Ensure changed, and which objects it left alone because an admin annotated
// them rbac.authorization.kubernetes.io/autoupdate=false although they lack upstream's rules or
// subjects.
type Result struct {
	Created, Updated int
	Protected        []string
}

// Served says whether the apiserver serves a resource: the hooks are registered only for the
// API groups that have storage, so objects of a resource --runtime-config turned off are not
// written. Nil serves all.
type Served func(schema.GroupVersionResource) bool

// Ensure creates, or adds what is missing to, every object the apiserver's RBAC and
// PriorityClass bootstrap hooks write, as they would: a protected object is left as it is. The
// policy is read from upstream when Ensure is called, so it follows the process's feature gates
// as the hooks do.
func Ensure(ctx context.Context, client kubernetes.Interface, workers int, served Served) (Result, error) {
	if served == nil {
		served = func(schema.GroupVersionResource) bool { return true }
	}
	rbac, err := listRBAC(ctx, client.RbacV1(), rbacServed(served))
	if err != nil {
		return Result{}, fmt.Errorf("listing the RBAC objects: %w", err)
	}
	items := policyItems(client, rbac, served)
	// Each worker writes only its items' slots; the tally follows.
	outcomes := make([]outcome, len(items))
	errs := make([]error, len(items))
	workqueue.ParallelizeUntil(ctx, workers, len(items), func(i int) {
		// As the hooks do: a conflict, or an apiserver briefly refusing writes, is retried.
		errs[i] = retry.OnError(retry.DefaultBackoff, func(err error) bool {
			return apierrors.IsConflict(err) || apierrors.IsServiceUnavailable(err)
		}, func() error {
			var err error
			outcomes[i], err = items[i].reconcile(ctx)
			return err
		})
	})
	var result Result
	var failed []error
	for i, out := range outcomes {
		switch {
		case errs[i] != nil:
			failed = append(failed, fmt.Errorf("%s: %w", items[i].name, errs[i]))
		case out.protected:
			result.Protected = append(result.Protected, items[i].name)
		case out.op == reconciliation.ReconcileCreate:
			result.Created++
		case out.op == reconciliation.ReconcileUpdate, out.op == reconciliation.ReconcileRecreate:
			result.Updated++
		}
	}
	sort.Strings(result.Protected)
	if len(failed) > 0 {
		// One cause is enough to act on; they usually share it.
		return result, fmt.Errorf("%d of %d bootstrap policy objects failed, first %w", len(failed), len(items), failed[0])
	}
	return result, ctx.Err()
}

// outcome is what reconciling one object did; protected says it was left alone although it
// lacks some of upstream's rules or subjects.
type outcome struct {
	op        reconciliation.ReconcileOperation
	protected bool
}

// reconcileWith runs a reconciler (of a role or of a binding) whose result gives, through
// fields, the operation it chose and whether the object was protected. The reconciler takes
// no context: an object in flight finishes when ctx ends.
func reconcileWith[R any](run func() (*R, error), fields func(*R) (reconciliation.ReconcileOperation, bool)) func(context.Context) (outcome, error) {
	return func(context.Context) (outcome, error) {
		r, err := run()
		if err != nil {
			return outcome{}, err
		}
		op, protected := fields(r)
		if protected {
			// Left alone: worth a word only when it lacks something.
			return outcome{protected: op != reconciliation.ReconcileNone}, nil
		}
		return outcome{op: op}, nil
	}
}

type item struct {
	name      string
	reconcile func(context.Context) (outcome, error)
}

// rbacServed says whether an RBAC resource is served.
func rbacServed(served Served) func(resource string) bool {
	return func(resource string) bool { return served(rbacv1.SchemeGroupVersion.WithResource(resource)) }
}

// policyItems is the work of the two hooks, one item per object of a served resource; rbac is
// the client the RBAC reconcilers use.
func policyItems(client kubernetes.Interface, rbac rbacv1client.RbacV1Interface, served Served) []item {
	namespaces := client.CoreV1().Namespaces()
	rbacResource := rbacServed(served)
	var items []item
	role := func(name string, opts reconciliation.ReconcileRoleOptions) {
		opts.Confirm = true
		items = append(items, item{name, reconcileWith(opts.Run, func(r *reconciliation.ReconcileClusterRoleResult) (reconciliation.ReconcileOperation, bool) {
			return r.Operation, r.Protected
		})})
	}
	binding := func(name string, opts reconciliation.ReconcileRoleBindingOptions) {
		opts.Confirm = true
		items = append(items, item{name, reconcileWith(opts.Run, func(r *reconciliation.ReconcileClusterRoleBindingResult) (reconciliation.ReconcileOperation, bool) {
			return r.Operation, r.Protected
		})})
	}
	if rbacResource("clusterroles") {
		for _, r := range append(bootstrappolicy.ClusterRoles(), bootstrappolicy.ControllerRoles()...) {
			role("clusterrole/"+r.Name, reconciliation.ReconcileRoleOptions{
				Role:   reconciliation.ClusterRoleRuleOwner{ClusterRole: &r},
				Client: reconciliation.ClusterRoleModifier{Client: rbac.ClusterRoles()},
			})
		}
	}
	if rbacResource("clusterrolebindings") {
		for _, b := range append(bootstrappolicy.ClusterRoleBindings(), bootstrappolicy.ControllerRoleBindings()...) {
			binding("clusterrolebinding/"+b.Name, reconciliation.ReconcileRoleBindingOptions{
				RoleBinding: reconciliation.ClusterRoleBindingAdapter{ClusterRoleBinding: &b},
				Client:      reconciliation.ClusterRoleBindingClientAdapter{Client: rbac.ClusterRoleBindings()},
			})
		}
	}
	if rbacResource("roles") {
		for namespace, roles := range bootstrappolicy.NamespaceRoles() {
			for _, r := range roles {
				role("role/"+namespace+"/"+r.Name, reconciliation.ReconcileRoleOptions{
					Role:   reconciliation.RoleRuleOwner{Role: &r},
					Client: reconciliation.RoleModifier{Client: rbac, NamespaceClient: namespaces},
				})
			}
		}
	}
	if rbacResource("rolebindings") {
		for namespace, bindings := range bootstrappolicy.NamespaceRoleBindings() {
			for _, b := range bindings {
				binding("rolebinding/"+namespace+"/"+b.Name, reconciliation.ReconcileRoleBindingOptions{
					RoleBinding: reconciliation.RoleBindingAdapter{RoleBinding: &b},
					Client:      reconciliation.RoleBindingClientAdapter{Client: rbac, NamespaceClient: namespaces},
				})
			}
		}
	}
	if !served(schedulingv1api.SchemeGroupVersion.WithResource("priorityclasses")) {
		return items
	}
	classes := client.SchedulingV1().PriorityClasses()
	for _, pc := range schedulingv1.SystemPriorityClasses() {
		// The hook only creates them: their value is fixed, and an existing one is kept.
		items = append(items, item{"priorityclass/" + pc.Name, func(ctx context.Context) (outcome, error) {
			_, err := classes.Get(ctx, pc.Name, metav1.GetOptions{})
			if !apierrors.IsNotFound(err) {
				return outcome{}, err
			}
			_, err = classes.Create(ctx, pc, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				return outcome{}, nil
			}
			return outcome{op: reconciliation.ReconcileCreate}, err
		}})
	}
	return items
}
