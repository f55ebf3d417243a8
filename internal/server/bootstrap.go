package server

import (
	"context"
	"fmt"
	"os"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/k1s-io/k1s/internal/component"
	"github.com/k1s-io/k1s/internal/fileutil"
	"github.com/k1s-io/k1s/internal/join"
	"github.com/k1s-io/k1s/internal/kubeclient"
	"github.com/k1s-io/k1s/internal/pki"
)

// fieldManager owns what k1s applies to the cluster, join's objects included.
const fieldManager = join.FieldManager

// newBootstrap returns the component that puts into the cluster what this server's own
// credentials and the nodes' tokens need: the server's default bootstrap token (created when
// missing, so that the node-token file keeps working), the admin kubeconfig's binding and the
// kubeconfig itself.
func (s *Server) newBootstrap(admin *kubeclient.Lazy) component.Component {
	return component.Task("k1s bootstrap", "creating the join token and the admin kubeconfig", func(ctx context.Context, _ component.Progress) error {
		client, err := admin.Client()
		if err != nil {
			return err
		}
		if err := join.EnsureTokenSecret(ctx, client, s.NodeToken); err != nil {
			return err
		}
		if err := s.grantAdmin(ctx, client); err != nil {
			return err
		}
		if err := s.writeAdminKubeconfig(); err != nil {
			return err
		}
		// Clusters of earlier k1s versions let the upstream approver approve every bootstrap
		// CSR, bypassing the check that a joining node's name is not taken.
		err = client.RbacV1().ClusterRoleBindings().Delete(ctx, "k1s:node-autoapprove-bootstrap", metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("removing the old bootstrap auto-approval: %w", err)
		}
		return nil
	})
}

// AdminBinding makes the admin kubeconfig's group cluster-admin.
const AdminBinding = "k1s:cluster-admins"

// grantAdmin binds the admin kubeconfig's group to cluster-admin once per data directory: an
// admin who deletes the binding has revoked every admin kubeconfig, and a restart must not
// grant them again. The break-glass kubeconfig (system:masters) can create it anew.
func (s *Server) grantAdmin(ctx context.Context, client kubernetes.Interface) error {
	marker := s.cfg.files.AdminGranted()
	if _, err := os.Stat(marker); err == nil {
		return nil
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: AdminBinding, Labels: map[string]string{join.ManagedByLabel: fieldManager}},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: pki.AdminGroup}},
	}
	_, err := client.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{FieldManager: fieldManager})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("granting the admin kubeconfig cluster-admin: %w", err)
	}
	return fileutil.WriteAtomic(marker, []byte("the "+AdminBinding+" ClusterRoleBinding was created; k1s will not create it again\n"), 0o600)
}
