package layout

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// names are every path layout gives for the data directory d: each method of DataDir, Server
// and Node that takes no argument, and both halves of each Pair.
func names(t *testing.T, d DataDir) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	var add func(v reflect.Value)
	add = func(v reflect.Value) {
		for i := 0; i < v.NumMethod(); i++ {
			m := v.Method(i)
			if m.Type().NumIn() != 0 || m.Type().NumOut() != 1 {
				continue
			}
			switch r := m.Call(nil)[0]; r.Interface().(type) {
			case string:
				out[r.String()] = true
			case Pair:
				p := r.Interface().(Pair)
				out[p.Cert], out[p.Key] = true, true
			case Server, Node:
				add(r)
			}
		}
	}
	add(reflect.ValueOf(d))
	return out
}

// TestCISReportsNameLayoutFiles holds layout against the committed CIS reports: every file
// of a data directory they name must be a name of layout's (or a directory holding one), so a
// file renamed here without the reports, or the reverse, is caught.
func TestCISReportsNameLayoutFiles(t *testing.T) {
	d := DataDir(DefaultDataDir)
	known := names(t, d)
	isKnown := func(path string) bool {
		if known[path] {
			return true
		}
		for n := range known {
			if strings.HasPrefix(n, path+"/") {
				return true
			}
		}
		return false
	}
	// Absolute paths under the default data dir, and paths the reports give relative to it.
	abs := regexp.MustCompile(regexp.QuoteMeta(DefaultDataDir) + `/[A-Za-z0-9_./-]*[A-Za-z0-9_]`)
	rel := regexp.MustCompile(`(?:^|[\s(,])((?:server|agent)/[A-Za-z0-9_./-]*[A-Za-z0-9_])`)
	for _, report := range []string{"../cis/report-default.txt", "../cis/report-hardened.txt"} {
		data, err := os.ReadFile(report)
		if err != nil {
			t.Fatal(err)
		}
		seen := 0
		for _, p := range abs.FindAllString(string(data), -1) {
			seen++
			if !isKnown(p) {
				t.Errorf("%s names %s, which layout does not", report, p)
			}
		}
		for _, m := range rel.FindAllStringSubmatch(string(data), -1) {
			seen++
			if p := d.Root() + "/" + m[1]; !isKnown(p) {
				t.Errorf("%s names %s, which layout does not", report, m[1])
			}
		}
		if seen < 20 {
			t.Errorf("%s: only %d data-dir paths found; has the report's format changed?", report, seen)
		}
	}
}

func TestServerAndNodeFilesAreDistinct(t *testing.T) {
	d := DataDir("/data")
	for n := range names(t, d) {
		if n != d.Root() && !strings.HasPrefix(n, "/data/") {
			t.Errorf("%s is outside the data directory", n)
		}
	}
	if d.Server().ServerCA().Cert == d.Server().EtcdCA().Cert {
		t.Error("the cluster CA and the etcd CA share a file")
	}
	if d.Server().Dir() == d.Node().Dir() {
		t.Error("the server and the node share a directory")
	}
	if got := d.ArgsFile(PartServer, "kube-apiserver"); got != "/data/server/etc/args/kube-apiserver.json" {
		t.Errorf("args file %s", got)
	}
}
