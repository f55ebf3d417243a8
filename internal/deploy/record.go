package deploy

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/k1s-io/k1s/internal/deploy/plan"
)

// The Addon kind (manifests/crds/addons.k1s.io.yaml): one object per manifest k1s deploys.
var addonResource = schema.GroupVersionResource{Group: "k1s.io", Version: "v1", Resource: "addons"}

const (
	addonNamespace = metav1.NamespaceSystem

	sourcePackaged = "packaged"
	sourceFile     = "file"
)

// addonObject is an Addon as k1s writes it.
type addonObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              addonSpec   `json:"spec"`
	Status            addonStatus `json:"status"`
}

type addonSpec struct {
	Source   string `json:"source"`
	Path     string `json:"path,omitempty"`
	Checksum string `json:"checksum,omitempty"`
}

type addonStatus struct {
	Objects     []plan.Ref   `json:"objects,omitempty"`
	Error       string       `json:"error,omitempty"`
	LastApplied *metav1.Time `json:"lastApplied,omitempty"`
}

// records reads every Addon: what each manifest owned when k1s last applied it.
func (a *applier) records(ctx context.Context) (map[string]*addonObject, error) {
	list, err := a.client.Resource(addonResource).Namespace(addonNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing the Addons: %w", err)
	}
	out := map[string]*addonObject{}
	for _, item := range list.Items {
		rec := &addonObject{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(item.Object, rec); err != nil {
			return nil, fmt.Errorf("Addon %s: %w", item.GetName(), err)
		}
		out[rec.Name] = rec
	}
	return out, nil
}

// writeRecord applies rec and returns it as stored (with its UID, for Events).
func (a *applier) writeRecord(ctx context.Context, rec *addonObject) (*unstructured.Unstructured, error) {
	obj := &addonObject{
		TypeMeta:   metav1.TypeMeta{APIVersion: addonResource.GroupVersion().String(), Kind: "Addon"},
		ObjectMeta: metav1.ObjectMeta{Name: rec.Name, Namespace: addonNamespace, Labels: map[string]string{managedBy: FieldManager}},
		Spec:       rec.Spec,
		Status:     rec.Status,
	}
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: content}
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	stored, err := a.client.Resource(addonResource).Namespace(addonNamespace).Apply(ctx, rec.Name, u, metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
	if err != nil {
		return nil, fmt.Errorf("recording Addon %s: %w", rec.Name, err)
	}
	return stored, nil
}

func (a *applier) deleteRecord(ctx context.Context, name string) error {
	err := a.client.Resource(addonResource).Namespace(addonNamespace).Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting Addon %s: %w", name, err)
	}
	return nil
}
