package server

import (
	"context"
	"fmt"
	"sync/atomic"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	rbacv1ac "k8s.io/client-go/applyconfigurations/rbac/v1"

	"github.com/k1s-io/k1s/internal/component"
	"github.com/k1s-io/k1s/internal/pki"
)

// fieldManager owns what k1s applies to the cluster.
const fieldManager = "k1s"

// clusterRoleBindings are the bindings k1s keeps in every cluster: the apiserver's access to
// kubelets, and the node TLS bootstrap (bootstrap tokens may ask for node client certificates,
// which are approved automatically, and nodes may renew their own).
var clusterRoleBindings = []struct {
	name, role, kind, subject string
}{
	{"k1s:kube-apiserver-kubelet-api-admin", "system:kubelet-api-admin", "User", pki.APIServerKubeletUser},
	{"k1s:node-bootstrapper", "system:node-bootstrapper", "Group", "system:bootstrappers"},
	{"k1s:node-autoapprove-bootstrap", "system:certificates.k8s.io:certificatesigningrequests:nodeclient", "Group", "system:bootstrappers"},
	{"k1s:node-autoapprove-certificate-rotation", "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient", "Group", "system:nodes"},
}

// newBootstrap returns the component that applies k1s's cluster objects once the apiserver
// serves, with server-side apply so that a restart converges rather than conflicts.
func newBootstrap(admin *adminClient) component.Component {
	var done atomic.Bool
	run := func(ctx context.Context) error {
		client, err := admin.get()
		if err != nil {
			return err
		}
		for _, b := range clusterRoleBindings {
			binding := rbacv1ac.ClusterRoleBinding(b.name).
				WithLabels(map[string]string{"app.kubernetes.io/managed-by": "k1s"}).
				WithRoleRef(rbacv1ac.RoleRef().WithAPIGroup("rbac.authorization.k8s.io").WithKind("ClusterRole").WithName(b.role)).
				WithSubjects(rbacv1ac.Subject().WithKind(b.kind).WithName(b.subject).WithAPIGroup("rbac.authorization.k8s.io"))
			if _, err := client.RbacV1().ClusterRoleBindings().Apply(ctx, binding, metav1.ApplyOptions{FieldManager: fieldManager, Force: true}); err != nil {
				return fmt.Errorf("applying ClusterRoleBinding %s: %w", b.name, err)
			}
		}
		done.Store(true)
		<-ctx.Done()
		return nil
	}
	ready := func(context.Context) error {
		if !done.Load() {
			return fmt.Errorf("applying %d cluster role bindings", len(clusterRoleBindings))
		}
		return nil
	}
	return component.NewFunc("k1s bootstrap", run, ready)
}
