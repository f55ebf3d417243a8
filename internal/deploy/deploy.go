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

// Deployer applies (or deletes) a set of manifests: the one code path for every manifest k1s
// puts into the cluster.
type Deployer struct {
	name   string
	fsys   fs.FS
	config func() (*rest.Config, error)
	addons []Addon
}

// NewDeployer returns the deployer, called name, of addons from fsys.
func NewDeployer(name string, fsys fs.FS, config func() (*rest.Config, error), addons []Addon) *Deployer {
	sorted := append([]Addon(nil), addons...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	return &Deployer{name: name, fsys: fsys, config: config, addons: sorted}
}

// Name is how logs call the deployer.
func (d *Deployer) Name() string { return d.name }

// Apply applies (or deletes) every add-on once.
func (d *Deployer) Apply(ctx context.Context) error {
	cfg, err := d.config()
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
	for _, a := range d.addons {
		manifest, err := Render(d.fsys, a)
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
	return nil
}

// Run applies the add-ons, then waits until ctx ends: the deployer as a controller of the
// server that holds the controllers' lease.
func (d *Deployer) Run(ctx context.Context) error {
	if err := d.Apply(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

// Component is the deployer as a component that applies once the apiserver serves, and is
// ready when it has.
func (d *Deployer) Component() component.Component {
	return component.Task(d.name, "applying "+d.name, func(ctx context.Context, _ component.Progress) error {
		return d.Apply(ctx)
	})
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
