package killall

import (
	"net"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/k1s-io/k1s/internal/layout"
)

func TestSelectRoutes(t *testing.T) {
	cidr := func(s string) *net.IPNet {
		_, n, err := net.ParseCIDR(s)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	const eth0, cni0, flannel1 = 2, 5, 6
	main := unix.RT_TABLE_MAIN
	routes := []netlink.Route{
		{Dst: cidr("10.42.0.0/16"), Type: unix.RTN_BLACKHOLE, Protocol: layout.RouteProtocol, Table: main},                 // 0 k1s's
		{Dst: cidr("10.43.0.0/16"), LinkIndex: 7, Protocol: layout.RouteProtocol, Table: main},                             // 1 k1s's
		{Dst: cidr("10.42.1.0/24"), LinkIndex: eth0, Gw: net.ParseIP("192.168.1.2"), Table: main},                          // 2 host-gw
		{Dst: cidr("10.42.0.0/24"), LinkIndex: cni0, Protocol: unix.RTPROT_KERNEL, Table: main},                            // 3 goes with cni0
		{Dst: cidr("10.42.2.0/24"), LinkIndex: flannel1, Table: main},                                                      // 4 goes with flannel.1
		{Dst: cidr("10.0.0.0/8"), LinkIndex: eth0, Table: main},                                                            // 5 contains the cluster
		{Dst: cidr("10.42.0.0/16"), LinkIndex: eth0, Table: main},                                                          // 6 not inside
		{Dst: cidr("192.168.1.0/24"), LinkIndex: eth0, Protocol: unix.RTPROT_KERNEL, Table: main},                          // 7
		{Dst: cidr("10.42.3.0/24"), LinkIndex: eth0, Table: 100},                                                           // 8 another table
		{Dst: cidr("fd00:42::/56"), Type: unix.RTN_BLACKHOLE, Protocol: layout.RouteProtocol, Table: main},                 // 9 k1s's
		{Dst: cidr("fd00:42:0:1::/64"), LinkIndex: eth0, Table: main},                                                      // 10 host-gw
		{Dst: cidr("fd00:43::/64"), LinkIndex: eth0, Table: main},                                                          // 11
		{LinkIndex: eth0, Gw: net.ParseIP("192.168.1.1"), Table: main},                                                     // 12 default
		{Dst: cidr("10.42.4.0/24"), LinkIndex: eth0, Protocol: layout.RouteProtocol, Table: 100},                           // 13 k1s's
		{Dst: cidr("0.10.42.0/24"), LinkIndex: eth0, Table: main},                                                          // 14
		{Dst: &net.IPNet{IP: net.ParseIP("::ffff:10.42.5.0"), Mask: net.CIDRMask(120, 128)}, LinkIndex: eth0, Table: main}, // 15 v6
	}
	got := selectRoutes(routes, map[int]bool{cni0: true, flannel1: true})
	want := []int{0, 1, 2, 9, 10, 13}
	if len(got) != len(want) {
		t.Fatalf("selected %v, want routes %v", got, want)
	}
	for i, w := range want {
		if got[i].Dst.String() != routes[w].Dst.String() || got[i].Table != routes[w].Table {
			t.Errorf("selection %d is %v, want %v", i, got[i], routes[w])
		}
	}
}

func TestOwnedLink(t *testing.T) {
	for _, c := range []struct {
		name, kind     string
		master, bridge int
		want           bool
	}{
		{"cni0", "bridge", 0, 5, true},
		{"k1s-svc", "dummy", 0, 5, true},
		{"veth1234", "veth", 5, 5, true},
		{"veth9999", "veth", 9, 5, false},
		{"veth0", "veth", 0, 0, false},
		{"flannel.1", "vxlan", 0, 5, true},
		{"flannel-v6.1", "vxlan", 0, 5, true},
		{"flannel.1", "dummy", 0, 5, false},
		{"vxlan.calico", "vxlan", 0, 5, false},
		{"eth0", "device", 0, 5, false},
	} {
		if got := ownedLink(c.name, c.kind, c.master, c.bridge); got != c.want {
			t.Errorf("ownedLink(%s, %s) = %v", c.name, c.kind, got)
		}
	}
}
