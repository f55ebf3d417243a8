//go:build e2e

package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BenchmarkAddons prints how long the add-on deployer takes, on a control-plane server: from a
// file written in server/manifests to its object in the API, and from a HelmChart written
// there to its release deployed. It asserts nothing.
func BenchmarkAddons(b *testing.B) {
	const runs = 5
	s := newServer(b)
	s.start()
	s.waitReady(2 * time.Minute)
	client := s.client()
	ctx := context.Background()
	// The deployer has read the directory once it recorded the packaged add-ons.
	s.writeManifest(b, "warm-up.yaml", markerManifest("warm-up"))
	s.waitManifestApplied(b, "warm-up", markerManifest("warm-up"))

	var file, chart []time.Duration
	for i := 0; i < runs; i++ {
		name := fmt.Sprintf("bench-file-%d", i)
		begin := time.Now()
		s.writeManifest(b, name+".yaml", markerManifest(name))
		file = append(file, pollUntil(b, begin, func() bool {
			_, err := client.CoreV1().ConfigMaps("kube-system").Get(ctx, name, metav1.GetOptions{})
			return err == nil
		}))
	}
	content := base64.StdEncoding.EncodeToString(settingsChart(b, "bench"))
	for i := 0; i < runs; i++ {
		name := fmt.Sprintf("bench-chart-%d", i)
		begin := time.Now()
		s.writeManifest(b, name+".yaml", helmChartManifest(name, "default", "  chartContent: "+content+"\n"))
		chart = append(chart, pollUntil(b, begin, func() bool {
			raw, err := client.RESTClient().Get().AbsPath("/apis/helm.cattle.io/v1/namespaces/default/helmcharts/" + name).DoRaw(ctx)
			if err != nil {
				return false
			}
			var hc struct {
				Status struct{ ReleaseStatus string }
			}
			return json.Unmarshal(raw, &hc) == nil && hc.Status.ReleaseStatus == "deployed"
		}))
	}
	printFigure(b, "manifest file written to its object", file, 2*time.Second, "s-manifest-applied")
	printFigure(b, "HelmChart file written to release deployed", chart, 0, "s-helmchart-deployed")
}

// pollUntil polls done every 10 ms and returns the time since begin when it is true.
func pollUntil(b *testing.B, begin time.Time, done func() bool) time.Duration {
	b.Helper()
	for !done() {
		if time.Since(begin) > time.Minute {
			b.Fatal("not within a minute")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(begin)
}
