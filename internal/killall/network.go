package killall

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/k1s-io/k1s/internal/layout"
)

// ownedLink reports whether the interface is the node's: the pod bridge, the veths on it, the
// service-route interface, and flannel's VXLAN devices (flannel.1, flannel-v6.1).
func ownedLink(name, kind string, master, bridgeIndex int) bool {
	switch {
	case name == layout.BridgeName, name == layout.ServiceDummy:
		return true
	case kind == "veth":
		return bridgeIndex > 0 && master == bridgeIndex
	case kind == "vxlan":
		return strings.HasPrefix(name, layout.FlannelLinkPrefix)
	}
	return false
}

// selectRoutes picks the node's routes: those k1s marks with its protocol, and in the main
// table those into a cluster CIDR (known from k1s's blackhole route for it) that flannel's
// host-gw backend adds for other nodes' pod subnets. Routes on interfaces in gone (the bridge's
// own subnet, flannel.1's) disappear with them.
func selectRoutes(routes []netlink.Route, gone map[int]bool) []netlink.Route {
	var clusters []*netlink.Route
	for i, r := range routes {
		if r.Protocol == layout.RouteProtocol && r.Type == unix.RTN_BLACKHOLE && r.Dst != nil {
			clusters = append(clusters, &routes[i])
		}
	}
	inCluster := func(r netlink.Route) bool {
		if r.Dst == nil || r.Table != unix.RT_TABLE_MAIN || gone[r.LinkIndex] {
			return false
		}
		ones, bits := r.Dst.Mask.Size()
		for _, c := range clusters {
			cOnes, cBits := c.Dst.Mask.Size()
			if bits == cBits && ones > cOnes && c.Dst.Contains(r.Dst.IP) {
				return true
			}
		}
		return false
	}
	var out []netlink.Route
	for _, r := range routes {
		if r.Protocol == layout.RouteProtocol || inCluster(r) {
			out = append(out, r)
		}
	}
	return out
}

// removeNetwork deletes the node's routes, then its interfaces, in the current network
// namespace only (an agent's killall runs in the agent's).
// consistentDump retries a netlink dump that the kernel interrupted because the list changed
// meanwhile (as it does while the pods' veths go away with their namespaces).
func consistentDump[T any](dump func() ([]T, error)) ([]T, error) {
	for attempt := 0; ; attempt++ {
		list, err := dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) || attempt == 20 {
			return list, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func removeNetwork(report func(string, ...any)) error {
	links, err := consistentDump(netlink.LinkList)
	if err != nil {
		return fmt.Errorf("listing interfaces: %w", err)
	}
	bridgeIndex := 0
	for _, l := range links {
		if l.Attrs().Name == layout.BridgeName {
			bridgeIndex = l.Attrs().Index
		}
	}
	var owned []netlink.Link
	gone := map[int]bool{}
	for _, l := range links {
		if a := l.Attrs(); ownedLink(a.Name, l.Type(), a.MasterIndex, bridgeIndex) {
			owned = append(owned, l)
			gone[a.Index] = true
		}
	}
	var errs []error
	routes, err := consistentDump(func() ([]netlink.Route, error) {
		return netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		errs = append(errs, fmt.Errorf("listing routes: %w", err))
	}
	for _, r := range selectRoutes(routes, gone) {
		if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("deleting route %s: %w", r, err))
			continue
		}
		report("deleted route %s", r.Dst)
	}
	for _, l := range owned {
		if err := netlink.LinkDel(l); err != nil {
			// A veth goes away with its pod's network namespace.
			if !errors.Is(err, unix.ENODEV) {
				errs = append(errs, fmt.Errorf("deleting interface %s: %w", l.Attrs().Name, err))
			}
			continue
		}
		report("deleted interface %s", l.Attrs().Name)
	}
	return errors.Join(errs...)
}
