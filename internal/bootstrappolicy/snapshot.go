package bootstrappolicy

import (
	"context"
	"sync"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	rbacv1client "k8s.io/client-go/kubernetes/typed/rbac/v1"
	"k8s.io/kubernetes/plugin/pkg/auth/authorizer/rbac/bootstrappolicy"
)

// snapshot serves each object's first Get from one List. Upstream's reconciler Gets every
// object before it decides to write it: ~140 requests at every start of the apiserver, where
// a few Lists do. A name's later Gets (the reconciler trying again after a conflict or a racing
// create) go to the apiserver, so a retry always sees the object as it is.
type snapshot[T any] struct {
	mu    sync.Mutex
	objs  map[string]*T
	asked map[string]bool
}

func newSnapshot[T any](items []T, key func(*T) string) *snapshot[T] {
	s := &snapshot[T]{objs: make(map[string]*T, len(items)), asked: map[string]bool{}}
	for i := range items {
		s.objs[key(&items[i])] = &items[i]
	}
	return s
}

// get answers the first Get of key from the List (NotFound if it was not listed), and later
// ones with live. Each listed object is handed out once, so the reconciler may change it.
func (s *snapshot[T]) get(key, name string, resource schema.GroupResource, live func() (*T, error)) (*T, error) {
	if s == nil {
		return live()
	}
	s.mu.Lock()
	first := !s.asked[key]
	s.asked[key] = true
	obj := s.objs[key]
	delete(s.objs, key)
	s.mu.Unlock()
	switch {
	case !first:
		return live()
	case obj == nil:
		return nil, apierrors.NewNotFound(resource, name)
	}
	return obj, nil
}

// listedRBAC is the RBAC client the reconcilers use: Gets from snapshots of what exists, the
// rest as the client does. Only the snapshots of served resources are taken.
type listedRBAC struct {
	rbacv1client.RbacV1Interface
	clusterRoles        *snapshot[rbacv1.ClusterRole]
	clusterRoleBindings *snapshot[rbacv1.ClusterRoleBinding]
	roles               *snapshot[rbacv1.Role]
	roleBindings        *snapshot[rbacv1.RoleBinding]
}

func listRBAC(ctx context.Context, client rbacv1client.RbacV1Interface, served func(resource string) bool) (*listedRBAC, error) {
	l := &listedRBAC{RbacV1Interface: client}
	all := metav1.ListOptions{}
	if served("clusterroles") {
		list, err := client.ClusterRoles().List(ctx, all)
		if err != nil {
			return nil, err
		}
		l.clusterRoles = newSnapshot(list.Items, func(o *rbacv1.ClusterRole) string { return o.Name })
	}
	if served("clusterrolebindings") {
		list, err := client.ClusterRoleBindings().List(ctx, all)
		if err != nil {
			return nil, err
		}
		l.clusterRoleBindings = newSnapshot(list.Items, func(o *rbacv1.ClusterRoleBinding) string { return o.Name })
	}
	// Namespaced objects only in the namespaces upstream's policy writes to (kube-system,
	// kube-public), whatever the size of the cluster's own RBAC.
	if served("roles") {
		var items []rbacv1.Role
		for namespace := range bootstrappolicy.NamespaceRoles() {
			list, err := client.Roles(namespace).List(ctx, all)
			if err != nil {
				return nil, err
			}
			items = append(items, list.Items...)
		}
		l.roles = newSnapshot(items, func(o *rbacv1.Role) string { return o.Namespace + "/" + o.Name })
	}
	if served("rolebindings") {
		var items []rbacv1.RoleBinding
		for namespace := range bootstrappolicy.NamespaceRoleBindings() {
			list, err := client.RoleBindings(namespace).List(ctx, all)
			if err != nil {
				return nil, err
			}
			items = append(items, list.Items...)
		}
		l.roleBindings = newSnapshot(items, func(o *rbacv1.RoleBinding) string { return o.Namespace + "/" + o.Name })
	}
	return l, nil
}

func (l *listedRBAC) ClusterRoles() rbacv1client.ClusterRoleInterface {
	return listedClusterRoles{l.RbacV1Interface.ClusterRoles(), l.clusterRoles}
}

func (l *listedRBAC) ClusterRoleBindings() rbacv1client.ClusterRoleBindingInterface {
	return listedClusterRoleBindings{l.RbacV1Interface.ClusterRoleBindings(), l.clusterRoleBindings}
}

func (l *listedRBAC) Roles(namespace string) rbacv1client.RoleInterface {
	return listedRoles{l.RbacV1Interface.Roles(namespace), namespace, l.roles}
}

func (l *listedRBAC) RoleBindings(namespace string) rbacv1client.RoleBindingInterface {
	return listedRoleBindings{l.RbacV1Interface.RoleBindings(namespace), namespace, l.roleBindings}
}

type listedClusterRoles struct {
	rbacv1client.ClusterRoleInterface
	snap *snapshot[rbacv1.ClusterRole]
}

func (c listedClusterRoles) Get(ctx context.Context, name string, opts metav1.GetOptions) (*rbacv1.ClusterRole, error) {
	return c.snap.get(name, name, rbacv1.Resource("clusterroles"), func() (*rbacv1.ClusterRole, error) {
		return c.ClusterRoleInterface.Get(ctx, name, opts)
	})
}

type listedClusterRoleBindings struct {
	rbacv1client.ClusterRoleBindingInterface
	snap *snapshot[rbacv1.ClusterRoleBinding]
}

func (c listedClusterRoleBindings) Get(ctx context.Context, name string, opts metav1.GetOptions) (*rbacv1.ClusterRoleBinding, error) {
	return c.snap.get(name, name, rbacv1.Resource("clusterrolebindings"), func() (*rbacv1.ClusterRoleBinding, error) {
		return c.ClusterRoleBindingInterface.Get(ctx, name, opts)
	})
}

type listedRoles struct {
	rbacv1client.RoleInterface
	namespace string
	snap      *snapshot[rbacv1.Role]
}

func (c listedRoles) Get(ctx context.Context, name string, opts metav1.GetOptions) (*rbacv1.Role, error) {
	return c.snap.get(c.namespace+"/"+name, name, rbacv1.Resource("roles"), func() (*rbacv1.Role, error) {
		return c.RoleInterface.Get(ctx, name, opts)
	})
}

type listedRoleBindings struct {
	rbacv1client.RoleBindingInterface
	namespace string
	snap      *snapshot[rbacv1.RoleBinding]
}

func (c listedRoleBindings) Get(ctx context.Context, name string, opts metav1.GetOptions) (*rbacv1.RoleBinding, error) {
	return c.snap.get(c.namespace+"/"+name, name, rbacv1.Resource("rolebindings"), func() (*rbacv1.RoleBinding, error) {
		return c.RoleBindingInterface.Get(ctx, name, opts)
	})
}
