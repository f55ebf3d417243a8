package coredns

import (
	"net"
	"os"
	"path/filepath"
	"testing"
)

func TestValuesForwardToNonLoopbackResolvers(t *testing.T) {
	for _, tc := range []struct {
		name, resolvConf, forward string
	}{
		{"upstreams", "nameserver 192.0.2.1\nnameserver 127.0.0.53\nnameserver 2001:db8::1\n", "forward . 192.0.2.1 2001:db8::1"},
		{"loopback only", "nameserver 127.0.0.1\nsearch example.org\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "resolv.conf")
			if err := os.WriteFile(path, []byte(tc.resolvConf), 0o600); err != nil {
				t.Fatal(err)
			}
			values, forwardless, err := Values(net.ParseIP("10.43.0.10"), "cluster.local", path, "k1s.local/coredns:1")
			if err != nil {
				t.Fatal(err)
			}
			if values["FORWARD"] != tc.forward || forwardless != (tc.forward == "") {
				t.Errorf("FORWARD %q (forwardless %v), want %q", values["FORWARD"], forwardless, tc.forward)
			}
			if values["CLUSTER_DNS"] != "10.43.0.10" || values["COREDNS_IMAGE"] != "k1s.local/coredns:1" {
				t.Errorf("values %v", values)
			}
		})
	}
	if _, _, err := Values(net.ParseIP("10.43.0.10"), "cluster.local", "/nonexistent/resolv.conf", "x"); err == nil {
		t.Error("a missing resolv.conf is not an error")
	}
}
