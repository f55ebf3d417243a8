package server

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"

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
		usable, err := join.EnsureTokenSecret(ctx, client, s.NodeToken, s.cfg.files.NodeTokenCreated())
		if err != nil {
			return err
		}
		if !usable {
			s.cfg.Log.Infof("the default join token (%s) was deleted, and stays deleted: nodes join with a token from 'k1s token create', or 'k1s token rotate' makes a new default one", s.cfg.files.NodeToken())
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

// AdminBinding makes the admin kubeconfig's user cluster-admin.
const AdminBinding = "k1s:cluster-admins"

// grantAdmin binds the admin kubeconfig's user to cluster-admin, once per admin identity: an
// admin who deletes the binding has revoked the admin kubeconfig, and a restart must not grant
// it again; a rotation (a new identity) binds the new user in place of every earlier one. The
// break-glass kubeconfig (system:masters) can bind anew.
func (s *Server) grantAdmin(ctx context.Context, client kubernetes.Interface) error {
	marker := s.cfg.files.AdminGranted()
	user := s.PKI.AdminUser
	granted, readErr := os.ReadFile(marker)
	previous := strings.TrimSpace(string(granted))
	if readErr == nil && previous == user {
		return nil
	}
	bindings := client.RbacV1().ClusterRoleBindings()
	if readErr == nil && !strings.HasPrefix(previous, pki.AdminUserPrefix) {
		// An earlier version granted its shared admin identity: if its binding was deleted
		// (revoked), it stays deleted; if not, it moves to the new identity below.
		if _, err := bindings.Get(ctx, AdminBinding, metav1.GetOptions{}); apierrors.IsNotFound(err) {
			s.cfg.Log.Infof("the %s ClusterRoleBinding was deleted, and stays deleted: the admin kubeconfig has no rights; 'k1s certificate rotate --service admin' issues and binds a new one", AdminBinding)
			return fileutil.WriteAtomic(marker, []byte(user+"\n"), 0o600)
		} else if err != nil {
			return fmt.Errorf("reading the admin binding: %w", err)
		}
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: AdminBinding, Labels: map[string]string{join.ManagedByLabel: fieldManager}},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	}
	_, err := bindings.Create(ctx, binding, metav1.CreateOptions{FieldManager: fieldManager})
	if apierrors.IsAlreadyExists(err) {
		// This server's earlier admin identity (or an earlier version's shared one) loses
		// cluster-admin here; other servers' admin identities keep it.
		var existing *rbacv1.ClusterRoleBinding
		if existing, err = bindings.Get(ctx, AdminBinding, metav1.GetOptions{}); err == nil {
			existing.Subjects = adminSubjects(existing.Subjects, previous, readErr == nil, user)
			_, err = bindings.Update(ctx, existing, metav1.UpdateOptions{FieldManager: fieldManager})
		}
	}
	if err != nil {
		return fmt.Errorf("granting the admin kubeconfig cluster-admin: %w", err)
	}
	return fileutil.WriteAtomic(marker, []byte(user+"\n"), 0o600)
}

// adminSubjects are the admin binding's subjects once user replaces this server's previous
// admin identity: each server of a cluster binds its own admin user. previous is what this
// server granted before (granted false: nothing); an earlier version's shared identity
// (previous without AdminUserPrefix) is replaced with every other subject.
func adminSubjects(subjects []rbacv1.Subject, previous string, granted bool, user string) []rbacv1.Subject {
	if granted && !strings.HasPrefix(previous, pki.AdminUserPrefix) {
		subjects = nil
	}
	subjects = slices.DeleteFunc(slices.Clone(subjects), func(s rbacv1.Subject) bool {
		return s.Kind == rbacv1.UserKind && (s.Name == user || (granted && s.Name == previous))
	})
	return append(subjects, rbacv1.Subject{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user})
}
