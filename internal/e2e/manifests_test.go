//go:build e2e

package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// manifestsDir is a server's auto-deploy directory.
func (s *process) manifestsDir() string { return filepath.Join(s.dataDir, "server", "manifests") }

// writeManifest writes rel in the server's manifests directory, as a user or a tool would.
func (s *process) writeManifest(t testing.TB, rel, content string) {
	t.Helper()
	p := filepath.Join(s.manifestsDir(), rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (s *process) removeManifest(t testing.TB, rel string) {
	t.Helper()
	if err := os.Remove(filepath.Join(s.manifestsDir(), rel)); err != nil {
		t.Fatal(err)
	}
}

// waitManifestApplied waits until the Addon named name records content as applied without
// error: the deployer has seen this version of the file.
func (s *process) waitManifestApplied(t testing.TB, name, content string) {
	t.Helper()
	sum := sha256.Sum256([]byte(content))
	want := hex.EncodeToString(sum[:])
	eventually(t, 30*time.Second, "Addon "+name+" applied", func() error {
		out, err := s.kubectl("-n", "kube-system", "get", "addons.k1s.io", name, "-o", "jsonpath={.spec.checksum} {.status.error}")
		if err != nil || out != want+" " {
			return fmt.Errorf("%q %v", out, err)
		}
		return nil
	})
}

// absent fails unless kubectl get args finds nothing.
func (s *process) absent(t testing.TB, args ...string) {
	t.Helper()
	out, err := s.kubectl(append(append([]string{"get"}, args...), "-o", "name", "--ignore-not-found")...)
	if err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("kubectl get %s: %q %v, want nothing", strings.Join(args, " "), out, err)
	}
}

const appManifest = `apiVersion: v1
kind: Namespace
metadata:
  name: manifests-e2e
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: manifests-e2e
data:
  colour: blue
---
# No namespace: it goes to default.
apiVersion: v1
kind: ConfigMap
metadata:
  name: app-extra
data:
  x: "1"
`

// The custom resource comes first: the CRD must still be applied, and established, before it.
const widgetManifest = `apiVersion: e2e.k1s.io/v1
kind: Widget
metadata:
  name: first
spec:
  size: 3
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.e2e.k1s.io
spec:
  group: e2e.k1s.io
  names: {kind: Widget, listKind: WidgetList, plural: widgets, singular: widget}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
`

// markerManifest is a one-ConfigMap manifest whose application proves that the deployer has
// read the directory since it was written.
func markerManifest(name string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\n  namespace: kube-system\n", name)
}

// checkManifestsDir checks the auto-deploy directory of a running server: files are applied,
// updated, pruned and deleted with their objects; .skip freezes; a broken file says where and
// leaves the others working; a CRD and its custom resource apply in one pass.
func checkManifestsDir(t *testing.T, s *process) {
	t.Run("manifest applied, updated and pruned", func(t *testing.T) {
		s.writeManifest(t, "app.yaml", appManifest)
		s.waitManifestApplied(t, "app", appManifest)
		if out := s.mustKubectl("-n", "manifests-e2e", "get", "configmap", "settings", "-o", "jsonpath={.data.colour}"); out != "blue" {
			t.Fatalf("settings.colour = %q", out)
		}
		s.mustKubectl("-n", "default", "get", "configmap", "app-extra")
		objects := s.mustKubectl("-n", "kube-system", "get", "addons.k1s.io", "app", "-o", `jsonpath={range .status.objects[*]}{.kind}/{.namespace}/{.name} {end}`)
		if objects != "Namespace//manifests-e2e ConfigMap/manifests-e2e/settings ConfigMap/default/app-extra " {
			t.Errorf("Addon app owns %q", objects)
		}

		edited := strings.Replace(strings.Split(appManifest, "# No namespace")[0], "blue", "green", 1)
		s.writeManifest(t, "app.yaml", edited)
		s.waitManifestApplied(t, "app", edited)
		if out := s.mustKubectl("-n", "manifests-e2e", "get", "configmap", "settings", "-o", "jsonpath={.data.colour}"); out != "green" {
			t.Errorf("after the edit settings.colour = %q, want green", out)
		}
		s.absent(t, "-n", "default", "configmap", "app-extra")
	})

	t.Run("CRD and its custom resource in one file", func(t *testing.T) {
		s.writeManifest(t, "crds/widget.yaml", widgetManifest)
		s.waitManifestApplied(t, "crds.widget", widgetManifest)
		if out := s.mustKubectl("get", "widgets.e2e.k1s.io", "first", "-o", "jsonpath={.spec.size}"); out != "3" {
			t.Errorf("widget size %q", out)
		}
	})

	t.Run("YAML error names its line and blocks nothing", func(t *testing.T) {
		broken := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: broken\n   colour: red\n"
		s.writeManifest(t, "sub/broken.yaml", broken)
		path := filepath.Join(s.manifestsDir(), "sub", "broken.yaml")
		eventually(t, 30*time.Second, "ApplyFailed event", func() error {
			out, err := s.kubectl("-n", "kube-system", "get", "events", "--field-selector", "reason=ApplyFailed,involvedObject.name=sub.broken", "-o", "jsonpath={.items[*].message}")
			if err != nil || !strings.Contains(out, path+": line 5: ") {
				return fmt.Errorf("%q %v", out, err)
			}
			return nil
		})
		if out := s.mustKubectl("-n", "kube-system", "get", "addons.k1s.io", "sub.broken", "-o", "jsonpath={.status.error}"); !strings.HasPrefix(out, "line 5: ") {
			t.Errorf("Addon sub.broken error %q, want line 5", out)
		}
		marker := markerManifest("after-broken")
		s.writeManifest(t, "after-broken.yaml", marker)
		s.waitManifestApplied(t, "after-broken", marker)
		s.removeManifest(t, "sub/broken.yaml")
	})

	t.Run("skip freezes a file", func(t *testing.T) {
		s.writeManifest(t, "app.yaml.skip", "")
		s.writeManifest(t, "app.yaml", appManifest)
		marker := markerManifest("skip-seen")
		s.writeManifest(t, "skip-seen.yaml", marker)
		s.waitManifestApplied(t, "skip-seen", marker)
		s.absent(t, "-n", "default", "configmap", "app-extra")
		s.removeManifest(t, "app.yaml")
		s.removeManifest(t, "skip-seen.yaml")
		s.writeManifest(t, "skip-seen-2.yaml", marker)
		s.waitManifestApplied(t, "skip-seen-2", marker)
		s.mustKubectl("-n", "manifests-e2e", "get", "configmap", "settings")
	})

	t.Run("deleting a file deletes its objects", func(t *testing.T) {
		s.removeManifest(t, "app.yaml.skip") // app.yaml itself is gone: unfrozen, it is deleted
		s.removeManifest(t, "crds/widget.yaml")
		eventually(t, time.Minute, "objects of deleted files gone", func() error {
			out, err := s.kubectl("get", "namespace/manifests-e2e", "crd/widgets.e2e.k1s.io", "-n", "kube-system", "addons.k1s.io/app", "addons.k1s.io/crds.widget", "-o", "name", "--ignore-not-found")
			if err != nil || strings.TrimSpace(out) != "" {
				return fmt.Errorf("still there: %q %v", out, err)
			}
			return nil
		})
	})

	t.Run("packaged add-on name refused", func(t *testing.T) {
		s.writeManifest(t, "coredns.yaml", markerManifest("not-coredns"))
		eventually(t, 30*time.Second, "refusal in the log", func() error {
			for _, l := range s.lines() {
				if strings.Contains(l, "coredns.yaml is not applied") && strings.Contains(l, "--disable coredns") {
					return nil
				}
			}
			return fmt.Errorf("no refusal logged")
		})
		s.absent(t, "-n", "kube-system", "configmap", "not-coredns")
		s.removeManifest(t, "coredns.yaml")
	})
}
