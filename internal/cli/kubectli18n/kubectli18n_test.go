package kubectli18n

import (
	"testing"

	"k8s.io/kubectl/pkg/util/i18n"
)

func TestRunsKubectl(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"/usr/local/bin/kubectl", "get", "pods"}, true},
		{[]string{"k1s", "kubectl", "get", "pods"}, true},
		{[]string{"/usr/local/bin/k1s", "server"}, false},
		{[]string{"containerd", "--config", "c.toml"}, false},
		{[]string{"k1s", "server", "kubectl"}, false},
		{nil, false},
	} {
		if got := RunsKubectl(tc.args); got != tc.want {
			t.Errorf("RunsKubectl(%q) = %v, want %v", tc.args, got, tc.want)
		}
	}
}

// This test binary is not kubectl: its texts stay English whatever the locale, because no
// catalogue is loaded. kubectl itself still translates (its locale is read at the first text).
func TestNoCatalogueOutsideKubectl(t *testing.T) {
	t.Setenv("LANG", "ja_JP.UTF-8")
	const text = "Display one or many resources"
	if got := i18n.T(text); got != text {
		t.Fatalf("i18n.T translated %q to %q outside kubectl: the catalogue was loaded", text, got)
	}
}
