// Package deploy applies k1s's add-on manifests to the cluster with server-side apply, so that
// every start converges the objects to what this k1s ships, and removes disabled add-ons.
package deploy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	"github.com/k1s-io/k1s/internal/component"
)

// FieldManager owns the fields k1s applies; it is also the managed-by label's value.
const FieldManager = "k1s"

const managedBy = "app.kubernetes.io/managed-by"

// Addon is one manifest file of the embedded set and the values of its placeholders.
type Addon struct {
	// Name is the file name without .yaml; --disable takes it.
	Name     string
	Disabled bool
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

// Objects decodes a multi-document YAML manifest.
func Objects(manifest []byte) ([]*unstructured.Unstructured, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(manifest)))
	var objs []*unstructured.Unstructured
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		obj := &unstructured.Unstructured{}
		if err := utilyaml.Unmarshal(doc, &obj.Object); err != nil {
			return nil, err
		}
		if len(obj.Object) == 0 {
			continue
		}
		objs = append(objs, obj)
	}
}

// New returns the component, called name, that applies (or deletes) addons once the
// apiserver serves.
func New(name string, fsys fs.FS, config func() (*rest.Config, error), addons []Addon) component.Component {
	var done atomic.Bool
	run := func(ctx context.Context) error {
		cfg, err := config()
		if err != nil {
			return err
		}
		dc, err := discovery.NewDiscoveryClientForConfig(cfg)
		if err != nil {
			return err
		}
		mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
		client, err := dynamic.NewForConfig(cfg)
		if err != nil {
			return err
		}
		sort.Slice(addons, func(i, j int) bool { return addons[i].Name < addons[j].Name })
		for _, a := range addons {
			manifest, err := Render(fsys, a)
			if err != nil {
				return err
			}
			objs, err := Objects(manifest)
			if err != nil {
				return fmt.Errorf("add-on %s: %w", a.Name, err)
			}
			for _, obj := range objs {
				if err := sync(ctx, client, mapper, obj, a.Disabled); err != nil {
					return fmt.Errorf("add-on %s: %s %s: %w", a.Name, obj.GetKind(), obj.GetName(), err)
				}
			}
		}
		done.Store(true)
		<-ctx.Done()
		return nil
	}
	ready := func(context.Context) error {
		if !done.Load() {
			return errors.New("applying " + name)
		}
		return nil
	}
	return component.NewFunc(name, run, ready)
}

func sync(ctx context.Context, client dynamic.Interface, mapper meta.RESTMapper, obj *unstructured.Unstructured, remove bool) error {
	gvk := obj.GroupVersionKind()
	mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return err
	}
	var ri dynamic.ResourceInterface = client.Resource(mapping.Resource)
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		ri = client.Resource(mapping.Resource).Namespace(obj.GetNamespace())
	}
	if remove {
		// Only what k1s deployed: a user may have installed their own under the same name.
		current, err := ri.Get(ctx, obj.GetName(), metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if current.GetLabels()[managedBy] != FieldManager {
			return nil
		}
		uid := current.GetUID()
		err = ri.Delete(ctx, obj.GetName(), metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return nil
		}
		return err
	}
	labels := obj.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	labels[managedBy] = FieldManager
	obj.SetLabels(labels)
	_, err = ri.Apply(ctx, obj.GetName(), obj, metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
	return err
}
