package helm

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"helm.sh/helm/v4/pkg/action"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/cli"
	"helm.sh/helm/v4/pkg/registry"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/k1s-io/k1s/internal/deploy/helm/spec"
)

// StaticChartPrefix is how k3s's manifests name a chart file of the server's static/charts
// directory: the placeholder stands for the API server's address.
const StaticChartPrefix = "https://%{KUBERNETES_API}%/static/"

// chartSource finds and loads a HelmChart's chart.
type chartSource struct {
	// staticDir holds the files k3s serves under /static/ (charts/NAME.tgz).
	staticDir string
	// cacheDir holds Helm's repository indexes and downloaded charts.
	cacheDir string
	client   kubernetes.Interface
}

// load returns the chart of hc: its chartContent, a file of the static directory, or a chart
// of a repository (spec.repo), a URL or an OCI registry.
func (s *chartSource) load(ctx context.Context, hc *spec.HelmChart) (*chartv2.Chart, error) {
	cs := hc.Spec
	switch {
	case cs.ChartContent != "":
		data, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cs.ChartContent))
		if err != nil {
			return nil, fmt.Errorf("chartContent is not base64: %w", err)
		}
		ch, err := loader.LoadArchive(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("chartContent: %w", err)
		}
		return ch, nil
	case strings.HasPrefix(cs.Chart, StaticChartPrefix):
		rel := filepath.Clean("/" + strings.TrimPrefix(cs.Chart, StaticChartPrefix))
		path := filepath.Join(s.staticDir, rel)
		ch, err := loader.Load(path)
		if err != nil {
			return nil, fmt.Errorf("chart %s (the file %s): %w", cs.Chart, path, err)
		}
		return ch, nil
	case cs.Chart == "":
		return nil, fmt.Errorf("the HelmChart names no chart: set spec.chart (with spec.repo, an oci:// or https:// reference, or %scharts/NAME.tgz) or spec.chartContent", StaticChartPrefix)
	}
	return s.download(ctx, hc)
}

// download fetches a chart the way `helm install --repo … --version …` does, with the
// repository's CA and credentials from the HelmChart's namespace; the proxy variables of
// k1s's environment apply.
func (s *chartSource) download(ctx context.Context, hc *spec.HelmChart) (*chartv2.Chart, error) {
	cs := hc.Spec
	tmp, err := os.MkdirTemp(s.cacheDir, "request-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	settings := cli.New()
	settings.RepositoryCache = filepath.Join(s.cacheDir, "repository")
	settings.ContentCache = filepath.Join(s.cacheDir, "content")
	settings.RepositoryConfig = filepath.Join(tmp, "repositories.yaml")
	settings.RegistryConfig = filepath.Join(tmp, "registry.json")

	install := action.NewInstall(action.NewConfiguration())
	install.Version = cs.Version
	install.RepoURL = cs.Repo
	install.InsecureSkipTLSVerify = cs.InsecureSkipTLSVerify
	install.PlainHTTP = cs.PlainHTTP
	install.PassCredentialsAll = cs.AuthPassCredentials
	ca := cs.RepoCA
	if cs.RepoCAConfigMap != nil {
		cm, err := s.client.CoreV1().ConfigMaps(hc.Namespace).Get(ctx, cs.RepoCAConfigMap.Name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("repoCAConfigMap: %w", err)
		}
		for _, v := range cm.Data {
			ca += "\n" + v
		}
	}
	if strings.TrimSpace(ca) != "" {
		install.CaFile = filepath.Join(tmp, "ca.crt")
		if err := os.WriteFile(install.CaFile, []byte(ca), 0o600); err != nil {
			return nil, err
		}
	}
	if cs.AuthSecret != nil {
		secret, err := s.client.CoreV1().Secrets(hc.Namespace).Get(ctx, cs.AuthSecret.Name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("authSecret: %w", err)
		}
		install.Username, install.Password = string(secret.Data["username"]), string(secret.Data["password"])
	}
	if cs.DockerRegistrySecret != nil {
		// A kubernetes.io/dockerconfigjson Secret: the file format Helm's registry client reads.
		secret, err := s.client.CoreV1().Secrets(hc.Namespace).Get(ctx, cs.DockerRegistrySecret.Name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("dockerRegistrySecret: %w", err)
		}
		config, ok := secret.Data[corev1.DockerConfigJsonKey]
		if !ok {
			return nil, fmt.Errorf("dockerRegistrySecret %s has no %s key", cs.DockerRegistrySecret.Name, corev1.DockerConfigJsonKey)
		}
		if err := os.WriteFile(settings.RegistryConfig, config, 0o600); err != nil {
			return nil, err
		}
	}
	opts := []registry.ClientOption{registry.ClientOptCredentialsFile(settings.RegistryConfig)}
	if cs.PlainHTTP {
		opts = append(opts, registry.ClientOptPlainHTTP())
	}
	if install.Username != "" {
		opts = append(opts, registry.ClientOptBasicAuth(install.Username, install.Password))
	}
	rc, err := registry.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	install.SetRegistryClient(rc)
	path, err := install.LocateChart(cs.Chart, settings)
	if err != nil {
		return nil, fmt.Errorf("fetching chart %s: %w", describe(cs), err)
	}
	ch, err := loader.Load(path)
	if err != nil {
		return nil, fmt.Errorf("chart %s: %w", describe(cs), err)
	}
	return ch, nil
}

func describe(cs spec.ChartSpec) string {
	out := cs.Chart
	if cs.Repo != "" {
		out += " from " + cs.Repo
	}
	if cs.Version != "" {
		out += " version " + cs.Version
	}
	return out
}
