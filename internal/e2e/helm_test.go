//go:build e2e

package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// chartArchive builds a chart's .tgz the way `helm package` lays it out: name/Chart.yaml,
// name/values.yaml, name/templates/….
func chartArchive(t testing.TB, name, version, values string, templates map[string]string) []byte {
	t.Helper()
	files := map[string]string{
		"Chart.yaml":  fmt.Sprintf("apiVersion: v2\nname: %s\nversion: %s\n", name, version),
		"values.yaml": values,
	}
	for file, content := range templates {
		files["templates/"+file] = content
	}
	var names []string
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, n := range names {
		hdr := &tar.Header{Name: name + "/" + n, Mode: 0o644, Size: int64(len(files[n])), ModTime: time.Unix(0, 0)}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(files[n])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// settingsChart renders a ConfigMap NAME-settings from its values colour and size.
func settingsChart(t testing.TB, name string) []byte {
	return chartArchive(t, name, "0.1.0", "colour: blue\nsize: 1\n", map[string]string{
		"settings.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-settings\ndata:\n  colour: {{ .Values.colour | quote }}\n  size: {{ .Values.size | quote }}\n",
	})
}

func helmChartManifest(name, namespace, spec string) string {
	return fmt.Sprintf("apiVersion: helm.cattle.io/v1\nkind: HelmChart\nmetadata:\n  name: %s\n  namespace: %s\nspec:\n%s", name, namespace, spec)
}

// waitRelease waits until HelmChart ns/name reports its release deployed at revision.
func (s *process) waitRelease(t testing.TB, ns, name string, revision int) {
	t.Helper()
	eventually(t, time.Minute, fmt.Sprintf("HelmChart %s/%s at revision %d", ns, name, revision), func() error {
		out, err := s.kubectl("-n", ns, "get", "helmcharts.helm.cattle.io", name, "-o", "jsonpath={.status.releaseStatus} {.status.revision} {.status.error}")
		if err != nil || out != fmt.Sprintf("deployed %d ", revision) {
			return fmt.Errorf("%q %v", out, err)
		}
		return nil
	})
}

// configMapData is a ConfigMap's data as kubectl prints it.
func (s *process) configMapData(t testing.TB, ns, name string) string {
	t.Helper()
	return s.mustKubectl("-n", ns, "get", "configmap", name, "-o", "jsonpath={.data}")
}

// k3sGrafanaExample is the HelmChart of k3s's documentation (docs.k3s.io, "Helm"), copied
// unchanged: it must apply as it is. Its chart names a repository this cluster has not got,
// which the HelmChart's status must say.
const k3sGrafanaExample = `apiVersion: helm.cattle.io/v1
kind: HelmChart
metadata:
  name: grafana
  namespace: kube-system
spec:
  chart: stable/grafana
  targetNamespace: monitoring
  set:
    adminPassword: "NotVerySafePassword"
  valuesContent: |-
    image:
      tag: master
    env:
      GF_EXPLORE_ENABLED: true
    adminUser: admin
    sidecar:
      datasources:
        enabled: true
`

// checkHelmCharts checks the HelmChart controller on a running server.
func checkHelmCharts(t *testing.T, s *process) {
	demo := base64.StdEncoding.EncodeToString(settingsChart(t, "demo"))

	t.Run("HelmChart installs, upgrades, takes its config and uninstalls", func(t *testing.T) {
		manifest := helmChartManifest("demo", "kube-system", "  targetNamespace: helm-e2e\n  createNamespace: true\n  chartContent: "+demo+"\n  valuesContent: |-\n    colour: red\n  set:\n    size: 3\n")
		s.writeManifest(t, "helm/demo.yaml", manifest)
		s.waitRelease(t, "kube-system", "demo", 1)
		if out := s.configMapData(t, "helm-e2e", "demo-settings"); out != `{"colour":"red","size":"3"}` {
			t.Fatalf("values: %s (want valuesContent's colour and set's size)", out)
		}
		// A changed set upgrades the release.
		manifest = strings.Replace(manifest, "size: 3", "size: 4", 1)
		s.writeManifest(t, "helm/demo.yaml", manifest)
		s.waitRelease(t, "kube-system", "demo", 2)
		if out := s.configMapData(t, "helm-e2e", "demo-settings"); out != `{"colour":"red","size":"4"}` {
			t.Errorf("after the set change: %s", out)
		}
		// A HelmChartConfig of the same name overrides valuesContent (set still wins).
		s.writeManifest(t, "helm/demo-config.yaml", "apiVersion: helm.cattle.io/v1\nkind: HelmChartConfig\nmetadata:\n  name: demo\n  namespace: kube-system\nspec:\n  valuesContent: |-\n    colour: green\n    size: 9\n")
		s.waitRelease(t, "kube-system", "demo", 3)
		if out := s.configMapData(t, "helm-e2e", "demo-settings"); out != `{"colour":"green","size":"4"}` {
			t.Errorf("with the HelmChartConfig: %s", out)
		}
		if out := s.mustKubectl("-n", "helm-e2e", "get", "secrets", "-l", "owner=helm,name=demo", "-o", "name"); strings.Count(out, "sh.helm.release.v1.demo.v") != 3 {
			t.Errorf("release records: %q, want 3 revisions", out)
		}
		// Deleting the file deletes the HelmChart, whose release is uninstalled.
		s.removeManifest(t, "helm/demo.yaml")
		s.removeManifest(t, "helm/demo-config.yaml")
		eventually(t, time.Minute, "release uninstalled", func() error {
			out, err := s.kubectl("-n", "helm-e2e", "get", "configmap/demo-settings", "-o", "name", "--ignore-not-found")
			if err != nil || out != "" {
				return fmt.Errorf("left: %q %v", out, err)
			}
			if out, _ := s.kubectl("-n", "helm-e2e", "get", "secrets", "-l", "owner=helm,name=demo", "-o", "name"); out != "" {
				return fmt.Errorf("release records left: %q", out)
			}
			if out, _ := s.kubectl("-n", "kube-system", "get", "helmcharts.helm.cattle.io", "demo", "-o", "name", "--ignore-not-found"); out != "" {
				return fmt.Errorf("HelmChart still there")
			}
			return nil
		})
	})

	t.Run("chart from a repository with its CA and credentials", func(t *testing.T) {
		archive := settingsChart(t, "repochart")
		sum := sha256.Sum256(archive)
		index := fmt.Sprintf("apiVersion: v1\nentries:\n  repochart:\n  - apiVersion: v2\n    name: repochart\n    version: 0.1.0\n    digest: %s\n    urls:\n    - charts/repochart-0.1.0.tgz\ngenerated: \"2026-01-01T00:00:00Z\"\n", hex.EncodeToString(sum[:]))
		mux := http.NewServeMux()
		authorized := func(next http.HandlerFunc) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				if user, pass, ok := r.BasicAuth(); !ok || user != "reader" || pass != "s3cret" {
					http.Error(w, "unauthorized", http.StatusUnauthorized)
					return
				}
				next(w, r)
			}
		}
		mux.HandleFunc("/index.yaml", authorized(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(index)) }))
		mux.HandleFunc("/charts/repochart-0.1.0.tgz", authorized(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(archive) }))
		// httptest's TLS server listens on 127.0.0.1 with a certificate for it.
		srv := httptest.NewTLSServer(mux)
		defer srv.Close()
		ca := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
		s.mustKubectl("-n", "default", "create", "secret", "generic", "repo-auth", "--from-literal=username=reader", "--from-literal=password=s3cret")
		spec := fmt.Sprintf("  repo: %s\n  chart: repochart\n  version: 0.1.0\n  authSecret:\n    name: repo-auth\n  repoCA: |\n%s  set:\n    colour: purple\n",
			srv.URL, "    "+strings.ReplaceAll(strings.TrimSpace(ca), "\n", "\n    ")+"\n")
		s.writeManifest(t, "helm/repo.yaml", helmChartManifest("fromrepo", "default", spec))
		s.waitRelease(t, "default", "fromrepo", 1)
		if out := s.configMapData(t, "default", "fromrepo-settings"); out != `{"colour":"purple","size":"1"}` {
			t.Errorf("values: %s", out)
		}
		s.removeManifest(t, "helm/repo.yaml")
		s.mustKubectl("-n", "default", "delete", "secret", "repo-auth")
	})

	t.Run("failing chart reports and blocks nothing", func(t *testing.T) {
		broken := base64.StdEncoding.EncodeToString(chartArchive(t, "broken", "0.1.0", "", map[string]string{"bad.yaml": "{{ .Values.nothing.here }}\n"}))
		s.writeManifest(t, "helm/broken.yaml", helmChartManifest("broken", "default", "  chartContent: "+broken+"\n"))
		s.writeManifest(t, "helm/second.yaml", helmChartManifest("second", "default", "  chartContent: "+demo+"\n"))
		s.waitRelease(t, "default", "second", 1)
		eventually(t, time.Minute, "the broken chart's error in status and Events", func() error {
			status, err := s.kubectl("-n", "default", "get", "helmcharts.helm.cattle.io", "broken", "-o", "jsonpath={.status.error}")
			if err != nil || !strings.Contains(status, "nil pointer evaluating") {
				return fmt.Errorf("status %q %v", status, err)
			}
			events, err := s.kubectl("-n", "default", "get", "events", "--field-selector", "involvedObject.kind=HelmChart,involvedObject.name=broken,reason=Failed", "-o", "jsonpath={.items[*].message}")
			if err != nil || !strings.Contains(events, "bad.yaml") {
				return fmt.Errorf("events %q %v", events, err)
			}
			return nil
		})
		s.removeManifest(t, "helm/broken.yaml")
		s.removeManifest(t, "helm/second.yaml")
	})

	t.Run("k3s documentation's HelmChart applies unchanged", func(t *testing.T) {
		s.writeManifest(t, "grafana.yaml", k3sGrafanaExample)
		s.waitManifestApplied(t, "grafana", k3sGrafanaExample)
		eventually(t, time.Minute, "the missing repository reported", func() error {
			out, err := s.kubectl("-n", "kube-system", "get", "helmcharts.helm.cattle.io", "grafana", "-o", "jsonpath={.spec.set.adminPassword} {.status.error}")
			if err != nil || !strings.HasPrefix(out, "NotVerySafePassword ") || !strings.Contains(out, "stable") {
				return fmt.Errorf("%q %v", out, err)
			}
			return nil
		})
		s.removeManifest(t, "grafana.yaml")
		eventually(t, time.Minute, "HelmChart grafana deleted", func() error {
			if out, _ := s.kubectl("-n", "kube-system", "get", "helmcharts.helm.cattle.io", "grafana", "-o", "name", "--ignore-not-found"); out != "" {
				return fmt.Errorf("still there")
			}
			return nil
		})
	})
}

// checkAirgapChart installs a chart the airgap way: its .tgz in server/static/charts, its
// image already in the node's agent/images, a HelmChart in server/manifests naming the chart
// by k3s's static URL. The pod runs without any network.
func checkAirgapChart(t *testing.T, s *process) {
	t.Run("airgap chart runs its pod", func(t *testing.T) {
		archive := chartArchive(t, "sleeper", "1.0.0", "image: k1s.local/busybox:test\n", map[string]string{
			"pod.yaml": "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {{ .Release.Name }}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {{ .Values.image }}\n    imagePullPolicy: Never\n    command: [sleep, \"3600\"]\n",
		})
		charts := filepath.Join(s.dataDir, "server", "static", "charts")
		if err := os.MkdirAll(charts, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(charts, "sleeper-1.0.0.tgz"), archive, 0o600); err != nil {
			t.Fatal(err)
		}
		s.writeManifest(t, "sleeper.yaml", helmChartManifest("sleeper", "kube-system", "  chart: https://%{KUBERNETES_API}%/static/charts/sleeper-1.0.0.tgz\n  targetNamespace: default\n"))
		s.waitRelease(t, "kube-system", "sleeper", 1)
		s.mustKubectl("wait", "--for=condition=Ready", "--timeout=120s", "pod/sleeper")
		s.removeManifest(t, "sleeper.yaml")
		eventually(t, 2*time.Minute, "the chart's pod removed with the HelmChart", func() error {
			if out, _ := s.kubectl("get", "pod", "sleeper", "-o", "name", "--ignore-not-found"); out != "" {
				return fmt.Errorf("still there")
			}
			return nil
		})
	})
}
