package plan

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestScan(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"a.yaml":            "x",
		"b.yml":             "x",
		"c.json":            "{}",
		"notes.txt":         "x",
		"sub/d.yaml":        "x",
		"frozen.yaml":       "x",
		"frozen.yaml.skip":  "",
		".hidden.yaml":      "x",
		".git/e.yaml":       "x",
		"coredns.yaml":      "x",
		"rbac.yaml":         "x",
		"A.yaml":            "x",
		"sub/deeper/f.YAML": "x",
		"gone.yaml.skip":    "",
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	files, refused, err := Scan(dir, Reserved{"coredns": true, "rbac": false}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range files {
		got = append(got, f.Rel+"="+f.Name+map[bool]string{true: " (skipped)"}[f.Skipped])
	}
	want := []string{"A.yaml=a", "b.yml=b", "c.json=c", "frozen.yaml=frozen (skipped)", "gone.yaml=gone (skipped)", "sub/d.yaml=sub.d", "sub/deeper/f.YAML=sub.deeper.f"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("files:\n got %q\nwant %q", got, want)
	}
	reasons := map[string]string{}
	for _, r := range refused {
		reasons[filepath.Base(r.Path)] = r.Reason
	}
	if len(reasons) != 3 {
		t.Fatalf("refused %v, want a.yaml, coredns.yaml and rbac.yaml", reasons)
	}
	if !strings.Contains(reasons["a.yaml"], "A.yaml") {
		t.Errorf("a.yaml: %q does not name the file that has the name", reasons["a.yaml"])
	}
	if !strings.Contains(reasons["coredns.yaml"], "--disable coredns") {
		t.Errorf("coredns.yaml: %q does not say how to replace the packaged add-on", reasons["coredns.yaml"])
	}
	if strings.Contains(reasons["rbac.yaml"], "--disable") {
		t.Errorf("rbac.yaml: %q suggests --disable for an add-on it does not take", reasons["rbac.yaml"])
	}
}

func TestScanMissingDir(t *testing.T) {
	files, refused, err := Scan(filepath.Join(t.TempDir(), "none"), nil, nil)
	if err != nil || len(files) != 0 || len(refused) != 0 {
		t.Fatalf("Scan = %v %v %v", files, refused, err)
	}
}

func TestAddonName(t *testing.T) {
	for rel, want := range map[string]string{
		"traefik.yaml":           "traefik",
		"apps/My_App.v2.yml":     "apps.my-app.v2",
		"x/../y.json":            "x.y",
		"--.yaml":                "manifest",
		"Über Grafana!.yaml":     "ber-grafana",
		strings.Repeat("a", 300): strings.Repeat("a", 253),
	} {
		if got := AddonName(rel); got != want {
			t.Errorf("AddonName(%q) = %q, want %q", rel, got, want)
		}
	}
}

func TestDocumentsAndFileError(t *testing.T) {
	data := "# leading comment\napiVersion: v1\nkind: A\n---\n---   # empty\n\napiVersion: v1\nkind: B\n  bad: indent\n--- \nkind: C\n"
	docs := Documents([]byte(data))
	var lines []int
	for _, d := range docs {
		lines = append(lines, d.Line)
	}
	if !reflect.DeepEqual(lines, []int{1, 6, 11}) {
		t.Fatalf("document lines %v, want [1 6 11]", lines)
	}
	err := FileError(docs[1], errors.New("error converting YAML to JSON: yaml: line 4: mapping values are not allowed in this context"))
	if got := err.Error(); got != "line 9: error converting YAML to JSON: yaml: mapping values are not allowed in this context" {
		t.Errorf("FileError = %q", got)
	}
	if got := FileError(docs[2], errors.New("Object 'apiVersion' is missing")).Error(); got != "document at line 11: Object 'apiVersion' is missing" {
		t.Errorf("FileError without a line = %q", got)
	}
}

func TestOrderAndStale(t *testing.T) {
	refs := []Ref{
		{APIVersion: "example.com/v1", Kind: "Widget", Namespace: "w", Name: "one"},
		{APIVersion: "v1", Kind: "Namespace", Name: "w"},
		{APIVersion: "apiextensions.k8s.io/v1", Kind: "CustomResourceDefinition", Name: "widgets.example.com"},
		{APIVersion: "v1", Kind: "ConfigMap", Namespace: "w", Name: "c"},
	}
	if got := Order(refs); !reflect.DeepEqual(got, []int{2, 1, 0, 3}) {
		t.Errorf("Order = %v, want [2 1 0 3]", got)
	}
	desired := []Ref{
		{APIVersion: "example.com/v2", Kind: "Widget", Namespace: "w", Name: "one"},
		{APIVersion: "v1", Kind: "ConfigMap", Namespace: "w", Name: "c"},
	}
	stale := Stale(refs, desired)
	if len(stale) != 2 || stale[0].Kind != "Namespace" || !stale[1].IsCRD() {
		t.Errorf("Stale = %v, want the Namespace and the CRD (a new API version is the same Widget)", stale)
	}
	if s := refs[0].String(); s != "Widget.example.com w/one" {
		t.Errorf("String = %q", s)
	}
}

func TestScanKeepsClaimedNames(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"a.yaml", "A.yml"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	files, refused, err := Scan(dir, nil, map[string]string{"a": filepath.Join(dir, "a.yaml")})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 || files[0].Rel != "a.yaml" || len(refused) != 1 || filepath.Base(refused[0].Path) != "A.yml" {
		t.Fatalf("a file added later took the name of the one that had it: files %v, refused %v", files, refused)
	}
}

// A ref recorded before its kind was known has no namespace; once applied it is in default.
// The two are one object: a prune must not delete what the retry just applied.
func TestStaleTakesNoNamespaceForDefault(t *testing.T) {
	old := []Ref{{APIVersion: "example.com/v1", Kind: "Widget", Name: "w"}}
	desired := []Ref{{APIVersion: "example.com/v1", Kind: "Widget", Namespace: "default", Name: "w"}}
	if stale := Stale(old, desired); len(stale) != 0 {
		t.Errorf("Stale = %v, want nothing", stale)
	}
	if stale := Stale(desired, old); len(stale) != 0 {
		t.Errorf("Stale the other way = %v, want nothing", stale)
	}
}
