package join

import (
	"net"
	"strings"
	"testing"
)

func testNodeConfig(t *testing.T) NodeConfig {
	t.Helper()
	_, cluster, _ := net.ParseCIDR("10.42.0.0/16")
	_, service, _ := net.ParseCIDR("10.43.0.0/16")
	return NodeConfig{ClusterCIDR: cluster, ServiceCIDR: service, ClusterDNS: net.ParseIP("10.43.0.10"), ClusterDomain: "cluster.local"}
}

func TestNodeConfigRoundTrip(t *testing.T) {
	want := testNodeConfig(t)
	got, err := ParseNodeConfig(want.Data())
	if err != nil {
		t.Fatal(err)
	}
	if got.ClusterCIDR.String() != want.ClusterCIDR.String() || got.ServiceCIDR.String() != want.ServiceCIDR.String() ||
		!got.ClusterDNS.Equal(want.ClusterDNS) || got.ClusterDomain != want.ClusterDomain {
		t.Fatalf("parsed %+v, want %+v", got, want)
	}
}

func TestParseNodeConfigErrors(t *testing.T) {
	good := testNodeConfig(t)
	for _, tc := range []struct{ key, value, want string }{
		{"cluster-cidr", "", `k1s-node-config: cluster-cidr ""`},
		{"cluster-cidr", "10.42.0.0", `k1s-node-config: cluster-cidr "10.42.0.0"`},
		{"service-cidr", "10.43.0.0/33", `k1s-node-config: service-cidr "10.43.0.0/33"`},
		{"cluster-dns", "dns", `k1s-node-config: cluster-dns "dns" is not an IP address`},
		{"cluster-dns", "", `k1s-node-config: cluster-dns "" is not an IP address`},
		{"cluster-domain", "", "k1s-node-config: no cluster-domain"},
	} {
		data := good.Data()
		data[tc.key] = tc.value
		if _, err := ParseNodeConfig(data); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s=%q: %v, want an error saying %q", tc.key, tc.value, err, tc.want)
		}
	}
	if _, err := ParseNodeConfig(nil); err == nil {
		t.Error("an empty ConfigMap parsed")
	}
}

func TestNodeConfigDisabledAddons(t *testing.T) {
	_, cluster, _ := net.ParseCIDR("10.42.0.0/16")
	_, service, _ := net.ParseCIDR("10.43.0.0/16")
	in := NodeConfig{ClusterCIDR: cluster, ServiceCIDR: service, ClusterDNS: net.ParseIP("10.43.0.10"), ClusterDomain: "cluster.local",
		DisabledAddons: []string{"coredns", "local-storage"}}
	out, err := ParseNodeConfig(in.Data())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(out.DisabledAddons, " ") != "coredns local-storage" {
		t.Errorf("disabled add-ons %v", out.DisabledAddons)
	}
	// What servers before the registry published has no such key: nothing is disabled.
	data := in.Data()
	delete(data, "disabled-addons")
	if out, err := ParseNodeConfig(data); err != nil || len(out.DisabledAddons) != 0 {
		t.Errorf("without the key: %v %v", out, err)
	}
}
