package spec

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestLayersFollowK3sPrecedence(t *testing.T) {
	chart := &HelmChart{Spec: ChartSpec{
		ValuesContent: "a: chart\nb: chart\nc: chart\nd: chart\nnested: {x: chart, z: chart}\n",
		ValuesSecrets: []SecretSpec{{Name: "chart-secret"}},
		Set: map[string]intstr.IntOrString{
			"d":        intstr.FromString("set"),
			"n":        intstr.FromInt32(3),
			"flag":     intstr.FromString("true"),
			"text":     intstr.FromString("007"),
			"nested.z": intstr.FromString("set"),
		},
	}}
	config := &HelmChartConfig{Spec: ConfigSpec{
		ValuesContent: "c: config\nnested: {x: config}\n",
		ValuesSecrets: []SecretSpec{{Name: "config-secret"}},
	}}
	secrets := map[string]string{"chart-secret": "b: chart-secret\nc: chart-secret\n", "config-secret": "e: config-secret\n"}
	files, err := Layers(chart, config, func(s SecretSpec) ([]ValuesFile, error) {
		return []ValuesFile{{Name: s.Name, Content: secrets[s.Name]}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, f.Name)
	}
	if want := []string{"HelmChart valuesContent", "chart-secret", "HelmChartConfig valuesContent", "config-secret"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("layers %q, want %q", names, want)
	}
	values, err := MergeValues(files, chart.Spec.Set)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"a": "chart", "b": "chart-secret", "c": "config", "d": "set", "e": "config-secret",
		"nested": map[string]any{"x": "config", "z": "set"},
		"n":      int64(3), "flag": true, "text": "007",
	}
	if !reflect.DeepEqual(values, want) {
		t.Errorf("values\n got %#v\nwant %#v", values, want)
	}
}

func TestLayersErrors(t *testing.T) {
	chart := &HelmChart{Spec: ChartSpec{ValuesSecrets: []SecretSpec{{Name: "missing"}}}}
	_, err := Layers(chart, nil, func(SecretSpec) ([]ValuesFile, error) { return nil, errors.New("not found") })
	if err == nil || !strings.Contains(err.Error(), "HelmChart valuesSecrets: not found") {
		t.Errorf("Layers = %v", err)
	}
	_, err = MergeValues([]ValuesFile{{Name: "HelmChart valuesContent", Content: "a: [unclosed"}}, nil)
	if err == nil || !strings.HasPrefix(err.Error(), "HelmChart valuesContent: ") {
		t.Errorf("MergeValues = %v, want an error naming the layer", err)
	}
}

func TestDigestChangesWithEveryInput(t *testing.T) {
	chart := &HelmChart{Spec: ChartSpec{Chart: "web", Set: map[string]intstr.IntOrString{"a": intstr.FromInt32(1)}}}
	base := Digest(chart, nil, nil)
	if Digest(chart, nil, nil) != base {
		t.Fatal("the digest is not stable")
	}
	changed := &HelmChart{Spec: ChartSpec{Chart: "web", Set: map[string]intstr.IntOrString{"a": intstr.FromInt32(2)}}}
	config := &HelmChartConfig{Spec: ConfigSpec{ValuesContent: "x: 1"}}
	for name, d := range map[string]string{
		"set":    Digest(changed, nil, nil),
		"config": Digest(chart, config, nil),
		"secret": Digest(chart, nil, []ValuesFile{{Name: "s", Content: "x: 1"}}),
	} {
		if d == base {
			t.Errorf("a changed %s leaves the digest as it was: the release would not be upgraded", name)
		}
	}
}
