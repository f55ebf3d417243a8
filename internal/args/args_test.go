package args

import (
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
