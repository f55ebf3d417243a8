package gotune

import "testing"

func TestDecide(t *testing.T) {
	env := func(vars map[string]string) func(string) string {
		return func(k string) string { return vars[k] }
	}
	const gib = 1 << 30
	for _, tc := range []struct {
		name   string
		vars   map[string]string
		memory uint64
		want   Settings
	}{
		{"defaults on a 1 GiB board", nil, gib, Settings{GCPercent: 50, MemoryLimit: gib / 4}},
		{"the user's GOGC wins", map[string]string{"GOGC": "100"}, gib, Settings{MemoryLimit: gib / 4}},
		{"the user's GOMEMLIMIT wins", map[string]string{"GOMEMLIMIT": "2GiB"}, gib, Settings{GCPercent: 50}},
		{"unknown memory: no limit", nil, 0, Settings{GCPercent: 50}},
	} {
		if got := Decide(env(tc.vars), tc.memory); got != tc.want {
			t.Errorf("%s: Decide = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestTotalMemory(t *testing.T) {
	if m := totalMemory(); m < 64<<20 {
		t.Fatalf("MemTotal read as %d bytes", m)
	}
}
