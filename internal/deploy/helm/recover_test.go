package helm

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	kubefake "helm.sh/helm/v4/pkg/kube/fake"
	releasecommon "helm.sh/helm/v4/pkg/release/common"
	releasev1 "helm.sh/helm/v4/pkg/release/v1"
	"helm.sh/helm/v4/pkg/storage"
	"helm.sh/helm/v4/pkg/storage/driver"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/k1s-io/k1s/internal/deploy/helm/spec"
)

// fixture is a worker whose Helm acts on an in-memory release store and a fake cluster, and
// the chart it deploys.
func fixture(t *testing.T) (*worker, *storage.Storage, *chartv2.Chart) {
	t.Helper()
	store := storage.Init(driver.NewMemory())
	log := logrus.New()
	log.Out = io.Discard
	w := &worker{c: &Controller{Log: log}, deployed: map[string]string{}}
	w.configFor = func(string) (*action.Configuration, error) {
		cfg := action.NewConfiguration()
		cfg.Releases = store
		cfg.KubeClient = &kubefake.PrintingKubeClient{Out: io.Discard}
		cfg.Capabilities = common.DefaultCapabilities
		return cfg, nil
	}
	ch := &chartv2.Chart{
		Metadata:  &chartv2.Metadata{APIVersion: "v2", Name: "web", Version: "1.0.0"},
		Templates: []*common.File{{Name: "templates/cm.yaml", ModTime: time.Now(), Data: []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n")}},
	}
	return w, store, ch
}

func seed(t *testing.T, store *storage.Storage, ch *chartv2.Chart, version int, status releasecommon.Status) {
	t.Helper()
	rel := &releasev1.Release{Name: "web", Namespace: "apps", Version: version, Chart: ch,
		Info: &releasev1.Info{Status: status, LastDeployed: time.Now()}}
	if err := store.Create(rel); err != nil {
		t.Fatal(err)
	}
}

func chart(policy string) *spec.HelmChart {
	return &spec.HelmChart{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "kube-system"},
		Spec:       spec.ChartSpec{TargetNamespace: "apps", FailurePolicy: policy},
	}
}

func statuses(t *testing.T, store *storage.Storage) string {
	t.Helper()
	history, err := store.History("web")
	if err != nil {
		return err.Error()
	}
	out := make([]string, len(history)+1)
	for _, r := range history {
		rel := r.(*releasev1.Release)
		out[rel.Version] = string(rel.Info.Status)
	}
	return strings.Join(out[1:], " ")
}

func TestDeployRecoversAReleaseACrashLeftPending(t *testing.T) {
	for _, tc := range []struct {
		name   string
		seeded []releasecommon.Status
		policy string
		// want is the status of each revision after the deploy; wantRevision the deployed one.
		want         string
		wantRevision int
	}{
		{"first install never finished: installed again", []releasecommon.Status{releasecommon.StatusPendingInstall}, "", "deployed", 1},
		{"upgrade never finished: rolled back, then upgraded", []releasecommon.Status{releasecommon.StatusDeployed, releasecommon.StatusPendingUpgrade}, "", "superseded failed superseded deployed", 4},
		{"failed release with reinstall: installed again", []releasecommon.Status{releasecommon.StatusDeployed, releasecommon.StatusFailed}, "reinstall", "deployed", 1},
		{"deployed release: upgraded", []releasecommon.Status{releasecommon.StatusDeployed}, "", "superseded deployed", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, store, ch := fixture(t)
			for i, st := range tc.seeded {
				seed(t, store, ch, i+1, st)
			}
			rel, err := w.deploy(context.Background(), chart(tc.policy), nil, ch, map[string]any{})
			if err != nil {
				t.Fatalf("deploy: %v (releases: %s)", err, statuses(t, store))
			}
			if rel.Version != tc.wantRevision || rel.Info.Status != releasecommon.StatusDeployed {
				t.Errorf("deployed revision %d %s, want %d deployed", rel.Version, rel.Info.Status, tc.wantRevision)
			}
			if got := statuses(t, store); got != tc.want {
				t.Errorf("revisions: %s, want %s", got, tc.want)
			}
		})
	}
}

func TestDeployAbortLeavesAFailedRelease(t *testing.T) {
	w, store, ch := fixture(t)
	seed(t, store, ch, 1, releasecommon.StatusDeployed)
	seed(t, store, ch, 2, releasecommon.StatusFailed)
	_, err := w.deploy(context.Background(), chart("abort"), nil, ch, map[string]any{})
	if err == nil || !strings.Contains(err.Error(), "failurePolicy is abort") {
		t.Fatalf("deploy = %v, want the abort error", err)
	}
	if got := statuses(t, store); got != "deployed failed" {
		t.Errorf("revisions %s: abort touched the release", got)
	}
	config := &spec.HelmChartConfig{Spec: spec.ConfigSpec{FailurePolicy: "reinstall"}}
	if _, err := w.deploy(context.Background(), chart("abort"), config, ch, map[string]any{}); err != nil {
		t.Fatalf("a HelmChartConfig's failurePolicy reinstall overrides the chart's abort: %v", err)
	}
}
