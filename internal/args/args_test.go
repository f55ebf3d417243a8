package args

import (
	"maps"
	"reflect"
	"testing"
)

func TestMergeUserReplacesDefault(t *testing.T) {
	got, err := Merge(map[string]string{"secure-port": "6443", "profiling": "false"},
		[]string{"secure-port=7443", "--v=2", "feature-gates=A=true", "feature-gates=B=false", "enable-x"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"--enable-x=true",
		"--feature-gates=A=true",
		"--feature-gates=B=false",
		"--profiling=false",
		"--secure-port=7443",
		"--v=2",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Merge:\n got %q\nwant %q", got, want)
	}
}

func TestMergeRejectsMalformed(t *testing.T) {
	for _, arg := range []string{"=1", "--", "a b=c"} {
		if _, err := Merge(nil, []string{arg}); err == nil {
			t.Errorf("Merge accepted %q", arg)
		}
	}
}

func TestValueTakesLast(t *testing.T) {
	merged := []string{"--a=1", "--ab=2", "--a=3"}
	if v, ok := Value(merged, "a"); !ok || v != "3" {
		t.Fatalf("Value(a) = %q, %v", v, ok)
	}
	if _, ok := Value(merged, "b"); ok {
		t.Fatal("Value(b) found a value")
	}
}

func TestMergeAppendAndRemove(t *testing.T) {
	defaults := map[string]string{"enable-admission-plugins": "NodeRestriction", "controllers": "*,bootstrapsigner,tokencleaner"}
	got, err := Merge(defaults, []string{
		"enable-admission-plugins+=AlwaysPullImages",
		"--enable-admission-plugins+=EventRateLimit",
		"controllers-=tokencleaner",
		"new-list+=a",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"--controllers=*,bootstrapsigner",
		"--enable-admission-plugins=NodeRestriction,AlwaysPullImages,EventRateLimit",
		"--new-list=a",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Merge:\n got %q\nwant %q", got, want)
	}
}

func TestMergeReplaceThenAppend(t *testing.T) {
	got, err := Merge(map[string]string{"enable-admission-plugins": "NodeRestriction"},
		[]string{"enable-admission-plugins=PodSecurity", "enable-admission-plugins+=NodeRestriction"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"--enable-admission-plugins=PodSecurity,NodeRestriction"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Merge: got %q, want %q", got, want)
	}
}

func TestSplitMinusInKey(t *testing.T) {
	// A key ending in "-" before "=" is the remove operator, not part of the key; keys with
	// dashes inside are unaffected.
	key, value, err := Split("--node-labels=a=b")
	if err != nil || key != "node-labels" || value != "a=b" {
		t.Fatalf("Split = %q %q %v", key, value, err)
	}
}

// Effective gives the defaults' keys as the user's arguments leave them, and nothing else.
func TestEffective(t *testing.T) {
	got, err := Effective(map[string]string{"client-ca-file": "/k1s/ca.crt", "names": "a"},
		[]string{"--client-ca-file=/user/ca.crt", "names+=b", "profiling=true"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"client-ca-file": "/user/ca.crt", "names": "a,b"}
	if !maps.Equal(got, want) {
		t.Errorf("Effective = %v, want %v", got, want)
	}
	if _, err := Effective(map[string]string{"k": "v"}, []string{"bad key=1"}); err == nil {
		t.Error("a malformed user argument is accepted")
	}
}
