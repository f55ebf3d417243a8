// Package deploy puts manifests into the cluster: k1s's packaged add-ons and the files of the
// auto-deploy directory (server/manifests) go through the one applier here, with server-side
// apply, pruning, and an Addon object per manifest that records what it owns.
package deploy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	"github.com/k1s-io/k1s/internal/component"
	"github.com/k1s-io/k1s/internal/deploy/plan"
)

// FieldManager owns the fields k1s applies; it is also the managed-by label's value.
const FieldManager = "k1s"

const (
	managedBy = "app.kubernetes.io/managed-by"
	// ownerAnnotation names the Addon an object belongs to: a prune or a deleted file removes
	// only objects that are still that Addon's (another file may have taken one over).
	ownerAnnotation = "k1s.io/addon"
)

// Addon is one packaged add-on: a manifest file of the embedded set and the values of its
// placeholders.
type Addon struct {
	// Name is the file name without .yaml; --disable takes it unless Required.
	Name     string
	Disabled bool
	// Required add-ons cannot be disabled (the RBAC nodes need to join).
	Required bool
	Values   map[string]string
}

// placeholder matches %{NAME}%.
var placeholder = regexp.MustCompile(`%\{[A-Z_]+\}%`)

// Render reads an add-on's manifest and fills in its %{NAME}% placeholders; a placeholder
// without a value is an error, not an empty string in the cluster. A disabled add-on is only
// rendered to find what to delete, so its placeholders may stay empty.
func Render(fsys fs.FS, a Addon) ([]byte, error) {
	data, err := fs.ReadFile(fsys, a.Name+".yaml")
	if err != nil {
		return nil, fmt.Errorf("add-on %s: %w", a.Name, err)
	}
	out := string(data)
	for k, v := range a.Values {
		out = strings.ReplaceAll(out, "%{"+k+"}%", v)
	}
	if a.Disabled {
		return []byte(placeholder.ReplaceAllString(out, "")), nil
	}
	if i := strings.Index(out, "%{"); i >= 0 {
		end := strings.Index(out[i:], "}%")
		if end < 0 {
			end = 0
		}
		return nil, fmt.Errorf("add-on %s: no value for placeholder %s", a.Name, out[i:i+end+2])
	}
	return []byte(out), nil
}

// Objects decodes a multi-document manifest (YAML or JSON; a List's items are objects of
// their own). An error names the line of the manifest it is on.
func Objects(manifest []byte) ([]*unstructured.Unstructured, error) {
	var objs []*unstructured.Unstructured
	for _, doc := range plan.Documents(manifest) {
		obj := &unstructured.Unstructured{}
		if err := utilyaml.Unmarshal(doc.Data, &obj.Object); err != nil {
			return nil, plan.FileError(doc, err)
		}
		if len(obj.Object) == 0 {
			continue // comments only
		}
		if obj.GetAPIVersion() == "" || obj.GetKind() == "" {
			return nil, plan.FileError(doc, errors.New("an object needs apiVersion and kind"))
		}
		if !obj.IsList() {
			objs = append(objs, obj)
			continue
		}
		list, err := obj.ToList()
		if err != nil {
			return nil, plan.FileError(doc, err)
		}
		for i := range list.Items {
			objs = append(objs, &list.Items[i])
		}
	}
	return objs, nil
}

func refOf(obj *unstructured.Unstructured) plan.Ref {
	return plan.Ref{APIVersion: obj.GetAPIVersion(), Kind: obj.GetKind(), Namespace: obj.GetNamespace(), Name: obj.GetName()}
}

// errNoKind is a kind the API server does not serve.
var errNoKind = errors.New("unknown kind")

// applier applies and deletes objects of any kind the API server serves.
type applier struct {
	client dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

func newApplier(cfg *rest.Config) (*applier, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &applier{client: client, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))}, nil
}

// resource finds where ref's kind is served; namespaced says whether objects of it have a
// namespace. A kind it does not know is looked up again once, in case a CRD just added it.
func (a *applier) resource(ref plan.Ref) (_ schema.GroupVersionResource, namespaced bool, _ error) {
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil {
		return schema.GroupVersionResource{}, false, err
	}
	gk := schema.GroupKind{Group: gv.Group, Kind: ref.Kind}
	mapping, err := a.mapper.RESTMapping(gk, gv.Version)
	if meta.IsNoMatchError(err) {
		a.mapper.Reset()
		mapping, err = a.mapper.RESTMapping(gk, gv.Version)
	}
	if meta.IsNoMatchError(err) {
		return schema.GroupVersionResource{}, false, fmt.Errorf("%w: the API server serves no kind %s in %s (if a CustomResourceDefinition defines it, it is not established yet)", errNoKind, ref.Kind, ref.APIVersion)
	}
	if err != nil {
		return schema.GroupVersionResource{}, false, err
	}
	return mapping.Resource, mapping.Scope.Name() == meta.RESTScopeNameNamespace, nil
}

// apply applies objs as the objects of the Addon named owner: CustomResourceDefinitions first
// (established before objects of their kinds follow), then Namespaces, then the others. It
// goes on past an object that fails and returns every failure.
func (a *applier) apply(ctx context.Context, owner string, objs []*unstructured.Unstructured) error {
	refs := make([]plan.Ref, len(objs))
	for i, obj := range objs {
		refs[i] = refOf(obj)
	}
	var errs []error
	var crds []string
	for _, i := range plan.Order(refs) {
		if len(crds) > 0 && !refs[i].IsCRD() {
			if err := a.waitEstablished(ctx, crds); err != nil {
				errs = append(errs, err)
			}
			crds = nil
		}
		if err := a.applyOne(ctx, owner, objs[i]); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", refs[i], err))
			continue
		}
		if refs[i].IsCRD() {
			crds = append(crds, refs[i].Name)
		}
	}
	return errors.Join(errs...)
}

func (a *applier) applyOne(ctx context.Context, owner string, obj *unstructured.Unstructured) error {
	gvr, namespaced, err := a.resource(refOf(obj))
	if err != nil {
		return err
	}
	ri := dynamic.ResourceInterface(a.client.Resource(gvr))
	if namespaced {
		if obj.GetNamespace() == "" {
			obj.SetNamespace(metav1.NamespaceDefault)
		}
		ri = a.client.Resource(gvr).Namespace(obj.GetNamespace())
	}
	labels := obj.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	labels[managedBy] = FieldManager
	obj.SetLabels(labels)
	annotations := obj.GetAnnotations()
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[ownerAnnotation] = owner
	obj.SetAnnotations(annotations)
	_, err = ri.Apply(ctx, obj.GetName(), obj, metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
	return err
}

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// waitEstablished waits until the API server serves the kinds of the named CRDs.
func (a *applier) waitEstablished(ctx context.Context, names []string) error {
	for _, name := range names {
		var last string
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			crd, err := a.client.Resource(crdResource).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				last = err.Error()
				return false, nil
			}
			conditions, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
			for _, c := range conditions {
				c, _ := c.(map[string]any)
				if c["type"] == "Established" && c["status"] == "True" {
					return true, nil
				}
				if c["type"] == "NamesAccepted" && c["status"] == "False" {
					last = fmt.Sprint(c["message"])
				}
			}
			return false, nil
		})
		if err != nil {
			return fmt.Errorf("CustomResourceDefinition %s not established after 30s: %s", name, last)
		}
	}
	a.mapper.Reset()
	return nil
}

// remove deletes the objects of refs that are still owner's, the other way round from how they
// were applied, and returns how many it deleted. Objects k1s applied before it recorded
// owners count as the packaged add-on's when legacy is set.
func (a *applier) remove(ctx context.Context, owner string, refs []plan.Ref, legacy bool) (int, error) {
	order := plan.Order(refs)
	slices.Reverse(order)
	deleted := 0
	var errs []error
	for _, i := range order {
		ref := refs[i]
		gvr, namespaced, err := a.resource(ref)
		if errors.Is(err, errNoKind) {
			continue // its kind is gone, and with it the object
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ref, err))
			continue
		}
		ri := dynamic.ResourceInterface(a.client.Resource(gvr))
		if namespaced {
			ns := ref.Namespace
			if ns == "" {
				ns = metav1.NamespaceDefault
			}
			ri = a.client.Resource(gvr).Namespace(ns)
		}
		current, err := ri.Get(ctx, ref.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ref, err))
			continue
		}
		got, has := current.GetAnnotations()[ownerAnnotation]
		mine := got == owner || (legacy && !has && current.GetLabels()[managedBy] == FieldManager)
		if !mine {
			continue // a user's object of the same name, or another manifest's now
		}
		uid := current.GetUID()
		err = ri.Delete(ctx, ref.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		switch {
		case err == nil:
			deleted++
		case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
		default:
			errs = append(errs, fmt.Errorf("deleting %s: %w", ref, err))
		}
	}
	return deleted, errors.Join(errs...)
}

// Task is a one-shot component that applies the packaged add-ons (none disabled) once the
// API server serves, through the same applier as the controller: the RBAC nodes need to join
// cannot wait for the controllers' lease.
func Task(name string, config func() (*rest.Config, error), fsys fs.FS, addons []Addon) component.Component {
	return component.Task(name, "applying "+name, func(ctx context.Context, _ component.Progress) error {
		cfg, err := config()
		if err != nil {
			return err
		}
		// A task applies a fixed handful of objects once, on the path to a Ready node: not
		// throttled by the client (5 requests a second after a burst of 10 cost it ~0.4 s).
		// Its bound is the add-ons' size; priority and fairness exempts k1s's supervisor
		// (system:masters).
		cfg = rest.CopyConfig(cfg)
		cfg.QPS = -1
		a, err := newApplier(cfg)
		if err != nil {
			return err
		}
		for _, addon := range addons {
			manifest, err := Render(fsys, addon)
			if err != nil {
				return err
			}
			objs, err := Objects(manifest)
			if err != nil {
				return fmt.Errorf("add-on %s: %w", addon.Name, err)
			}
			if err := a.apply(ctx, addon.Name, objs); err != nil {
				return fmt.Errorf("add-on %s: %w", addon.Name, err)
			}
		}
		return nil
	})
}
