package deploy

import (
	"io/fs"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"

	"github.com/k1s-io/k1s/internal/deploy/plan"
	"github.com/k1s-io/k1s/manifests"
)

func TestCoreDNSRenders(t *testing.T) {
	out, err := Render(manifests.FS, Addon{Name: "coredns", Values: map[string]string{
		"CLUSTER_DNS": "10.43.0.10", "CLUSTER_DOMAIN": "cluster.local",
		"COREDNS_IMAGE": "k1s.local/coredns:v1", "FORWARD": "forward . 192.0.2.53",
	}})
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Objects(out)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, o := range objs {
		kinds[o.GetKind()] = true
	}
	for _, k := range []string{"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Deployment", "Service"} {
		if !kinds[k] {
			t.Errorf("no %s in the CoreDNS manifest", k)
		}
	}
	for _, want := range []string{"clusterIP: 10.43.0.10", "image: k1s.local/coredns:v1", "kubernetes cluster.local", "forward . 192.0.2.53"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("rendered manifest lacks %q", want)
		}
	}
}

func TestMissingValueIsAnError(t *testing.T) {
	_, err := Render(manifests.FS, Addon{Name: "coredns", Values: map[string]string{"CLUSTER_DNS": "10.43.0.10"}})
	if err == nil || !strings.Contains(err.Error(), "placeholder") {
		t.Fatalf("Render = %v, want a missing-placeholder error", err)
	}
}

func TestDisabledRendersWithoutValues(t *testing.T) {
	out, err := Render(manifests.FS, Addon{Name: "coredns", Disabled: true})
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Objects(out)
	if err != nil || len(objs) < 6 {
		t.Fatalf("Objects = %d, %v", len(objs), err)
	}
}

func TestObjectsNamesTheLineOfAnError(t *testing.T) {
	manifest := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n   bad: indent\n"
	_, err := Objects([]byte(manifest))
	if err == nil || !strings.HasPrefix(err.Error(), "line 10: ") {
		t.Fatalf("Objects = %v, want an error on line 10", err)
	}
	if _, err := Objects([]byte("metadata:\n  name: x\n")); err == nil || !strings.Contains(err.Error(), "apiVersion and kind") {
		t.Fatalf("Objects without a kind = %v", err)
	}
}

func TestObjectsExpandsLists(t *testing.T) {
	objs, err := Objects([]byte(`{"apiVersion": "v1", "kind": "List", "items": [
	  {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}},
	  {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "b"}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 2 || objs[0].GetKind() != "ConfigMap" || objs[1].GetName() != "b" {
		t.Fatalf("Objects = %v", objs)
	}
}

// TestCRDsAreValid decodes k1s's CRDs strictly: a misspelt or misplaced field would make the
// API server refuse them at every start.
func TestCRDsAreValid(t *testing.T) {
	for _, file := range []string{manifests.AddonCRD, manifests.HelmCRDs} {
		data, err := fs.ReadFile(manifests.CRDs, file)
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range plan.Documents(data) {
			var crd apiextensionsv1.CustomResourceDefinition
			if err := yaml.UnmarshalStrict(doc.Data, &crd); err != nil {
				t.Fatalf("%s line %d: %v", file, doc.Line, err)
			}
			if crd.Kind != "CustomResourceDefinition" || len(crd.Spec.Versions) == 0 || crd.Spec.Versions[0].Schema == nil {
				t.Errorf("%s line %d: not a CRD with a schema", file, doc.Line)
			}
		}
	}
}
