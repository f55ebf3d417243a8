package bootstrappolicy

import (
	"context"
	"errors"
	"maps"
	"regexp"
	"slices"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	schedulingv1 "k8s.io/kubernetes/pkg/apis/scheduling/v1"
	"k8s.io/kubernetes/plugin/pkg/auth/authorizer/rbac/bootstrappolicy"
)

// The objects the apiserver's hooks write, by kind.
func upstreamCounts() map[string]int {
	counts := map[string]int{
		"clusterroles":        len(bootstrappolicy.ClusterRoles()) + len(bootstrappolicy.ControllerRoles()),
		"clusterrolebindings": len(bootstrappolicy.ClusterRoleBindings()) + len(bootstrappolicy.ControllerRoleBindings()),
		"priorityclasses":     len(schedulingv1.SystemPriorityClasses()),
	}
	for _, roles := range bootstrappolicy.NamespaceRoles() {
		counts["roles"] += len(roles)
	}
	for _, bindings := range bootstrappolicy.NamespaceRoleBindings() {
		counts["rolebindings"] += len(bindings)
	}
	return counts
}

func TestEnsureCreatesUpstreamPolicyThenChangesNothing(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	want := upstreamCounts()
	total := totalObjects()
	if want["clusterroles"] < 50 || want["priorityclasses"] != 2 {
		t.Fatalf("upstream policy looks wrong: %v", want)
	}

	got, err := Ensure(ctx, client, Workers, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.Created != total || got.Updated != 0 || len(got.Protected) != 0 {
		t.Fatalf("first Ensure: %+v, want %d created", got, total)
	}
	lists := map[string]int{}
	crs, _ := client.RbacV1().ClusterRoles().List(ctx, metav1.ListOptions{})
	lists["clusterroles"] = len(crs.Items)
	crbs, _ := client.RbacV1().ClusterRoleBindings().List(ctx, metav1.ListOptions{})
	lists["clusterrolebindings"] = len(crbs.Items)
	rs, _ := client.RbacV1().Roles("").List(ctx, metav1.ListOptions{})
	lists["roles"] = len(rs.Items)
	rbs, _ := client.RbacV1().RoleBindings("").List(ctx, metav1.ListOptions{})
	lists["rolebindings"] = len(rbs.Items)
	pcs, _ := client.SchedulingV1().PriorityClasses().List(ctx, metav1.ListOptions{})
	lists["priorityclasses"] = len(pcs.Items)
	for kind, n := range want {
		if lists[kind] != n {
			t.Errorf("%s: %d in the cluster, upstream has %d", kind, lists[kind], n)
		}
	}
	// Namespaced roles live in kube-system and kube-public: the reconciler creates those.
	if _, err := client.CoreV1().Namespaces().Get(ctx, "kube-public", metav1.GetOptions{}); err != nil {
		t.Errorf("kube-public: %v", err)
	}

	got, err = Ensure(ctx, client, Workers, nil)
	if err != nil || got.Created != 0 || got.Updated != 0 || len(got.Protected) != 0 {
		t.Fatalf("second Ensure: %+v, %v; want no change", got, err)
	}
}

func TestEnsureRestoresRulesButKeepsAProtectedRole(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	if _, err := Ensure(ctx, client, Workers, nil); err != nil {
		t.Fatal(err)
	}
	roles := client.RbacV1().ClusterRoles()
	stripRules(t, client, "system:kube-scheduler", map[string]string{rbacv1.AutoUpdateAnnotationKey: "true"})
	stripRules(t, client, "system:node", map[string]string{rbacv1.AutoUpdateAnnotationKey: "false"})

	got, err := Ensure(ctx, client, Workers, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.Created != 0 || got.Updated != 1 || !slices.Equal(got.Protected, []string{"clusterrole/system:node"}) {
		t.Fatalf("Ensure: %+v, want the unprotected role updated and the protected one reported", got)
	}
	if r, _ := roles.Get(ctx, "system:kube-scheduler", metav1.GetOptions{}); len(r.Rules) == 0 {
		t.Error("system:kube-scheduler: rules not restored")
	}
	if r, _ := roles.Get(ctx, "system:node", metav1.GetOptions{}); len(r.Rules) != 0 {
		t.Error("system:node: autoupdate=false, but its rules were changed")
	}
}

// A create that loses the race to the apiserver's own hook reconciles again instead of failing.
func TestEnsureToleratesARacingCreator(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	raced := 0
	client.PrependReactor("create", "clusterroles", func(action k8stesting.Action) (bool, runtime.Object, error) {
		obj := action.(k8stesting.CreateAction).GetObject().(*rbacv1.ClusterRole)
		if obj.Name != "system:kube-controller-manager" || raced > 0 {
			return false, nil, nil
		}
		raced++
		// The other creator's object lands first.
		if err := client.Tracker().Add(obj.DeepCopy()); err != nil {
			return true, nil, err
		}
		return true, nil, apierrors.NewAlreadyExists(schema.GroupResource{Group: "rbac.authorization.k8s.io", Resource: "clusterroles"}, obj.Name)
	})
	got, err := Ensure(ctx, client, Workers, nil)
	if err != nil {
		t.Fatal(err)
	}
	if raced != 1 || got.Created != totalObjects()-1 {
		t.Fatalf("raced %d, %+v; want one race and every other object created", raced, got)
	}
}

func TestEnsureReportsWhatFailed(t *testing.T) {
	client := fake.NewClientset()
	client.PrependReactor("create", "priorityclasses", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "priorityclasses"}, "", errors.New("denied"))
	})
	_, err := Ensure(context.Background(), client, Workers, nil)
	if err == nil || !regexp.MustCompile(`^2 of \d+ bootstrap policy objects failed, first priorityclass/system-`).MatchString(err.Error()) {
		t.Fatalf("got %v; want both priority classes reported", err)
	}
}

func totalObjects() int {
	n := 0
	for _, c := range upstreamCounts() {
		n += c
	}
	return n
}

// A resource the apiserver does not serve (--runtime-config) is left out, as its hook would be.
func TestEnsureWritesOnlyServedResources(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	served := func(r schema.GroupVersionResource) bool { return r.Resource != "priorityclasses" }
	got, err := Ensure(ctx, client, Workers, served)
	if err != nil {
		t.Fatal(err)
	}
	if want := totalObjects() - upstreamCounts()["priorityclasses"]; got.Created != want {
		t.Fatalf("created %d, want %d", got.Created, want)
	}
	if pcs, _ := client.SchedulingV1().PriorityClasses().List(ctx, metav1.ListOptions{}); len(pcs.Items) != 0 {
		t.Fatalf("%d priority classes written, their resource is not served", len(pcs.Items))
	}
}

// RBAC objects are read with Lists; only a retry reads an object again.
func TestEnsureReadsTheRBACObjectsWithLists(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	if _, err := Ensure(ctx, client, Workers, nil); err != nil {
		t.Fatal(err)
	}
	stripRules(t, client, "system:kube-scheduler", nil)
	// The first write of the stripped role meets another writer's change.
	conflicts := 0
	client.PrependReactor("update", "clusterroles", func(action k8stesting.Action) (bool, runtime.Object, error) {
		if action.(k8stesting.UpdateAction).GetObject().(*rbacv1.ClusterRole).Name != "system:kube-scheduler" || conflicts > 0 {
			return false, nil, nil
		}
		conflicts++
		return true, nil, apierrors.NewConflict(rbacv1.Resource("clusterroles"), "system:kube-scheduler", errors.New("changed"))
	})
	client.ClearActions()

	got, err := Ensure(ctx, client, Workers, nil)
	if err != nil {
		t.Fatal(err)
	}
	if conflicts != 1 || got.Updated != 1 {
		t.Fatalf("conflicts %d, %+v; want the role updated after one conflict", conflicts, got)
	}
	reads := map[string]int{}
	for _, a := range client.Actions() {
		if a.GetResource().Group == rbacv1.GroupName && (a.GetVerb() == "get" || a.GetVerb() == "list") {
			reads[a.GetVerb()+" "+a.GetResource().Resource]++
		}
	}
	want := map[string]int{"list clusterroles": 1, "list clusterrolebindings": 1, "get clusterroles": 1} // the retry after the conflict
	// Namespaced: one List per namespace upstream's policy writes to.
	want["list roles"] = len(bootstrappolicy.NamespaceRoles())
	want["list rolebindings"] = len(bootstrappolicy.NamespaceRoleBindings())
	if !maps.Equal(reads, want) {
		t.Errorf("RBAC reads %v, want %v", reads, want)
	}
	if r, _ := client.RbacV1().ClusterRoles().Get(ctx, "system:kube-scheduler", metav1.GetOptions{}); len(r.Rules) == 0 {
		t.Error("system:kube-scheduler: rules not restored")
	}
}

// stripRules takes a ClusterRole's rules away and sets its annotations, as an admin might.
func stripRules(t *testing.T, client *fake.Clientset, name string, annotations map[string]string) {
	t.Helper()
	ctx := context.Background()
	roles := client.RbacV1().ClusterRoles()
	r, err := roles.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r.Rules = nil
	r.Annotations = annotations
	if _, err := roles.Update(ctx, r, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}
