// Package network sets up a k1s node's pod network: the CNI configuration on the node's pod
// CIDR (bridge cni0, host-local IPAM, portmap, bandwidth), the kernel settings it needs,
// routes that keep cluster and service traffic on the machine, and masquerading for traffic
// that leaves the cluster.
package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	utiliptables "k8s.io/kubernetes/pkg/util/iptables"
	"sigs.k8s.io/knftables"

	"github.com/k1s-io/k1s/internal/component"
	"github.com/k1s-io/k1s/internal/fileutil"
	"github.com/k1s-io/k1s/internal/kubeclient"
	"github.com/k1s-io/k1s/internal/layout"
)

// routeProtocol marks the routes k1s adds, so that killall finds them whatever the CIDRs were.
const routeProtocol = netlink.RouteProtocol(layout.RouteProtocol)

// Pod network backends between nodes (flannel's).
const (
	BackendVXLAN  = "vxlan"
	BackendHostGW = "host-gw"
	BackendNone   = "none"
)

// Config is what the node's network needs.
type Config struct {
	NodeName    string
	NodeIP      net.IP
	ClusterCIDR *net.IPNet
	ServiceCIDR *net.IPNet
	// Backend is how pod traffic crosses to other nodes; Iface the interface it uses
	// (default: the one holding NodeIP).
	Backend string
	Iface   string
	// ConfList is the CNI configuration file; IPAMDir holds host-local's allocations;
	// FlannelConf is where flannel's network configuration is written for it to read.
	ConfList    string
	IPAMDir     string
	FlannelConf string
	// Kubeconfig is the node's own credential: the network reads the node's pod CIDR and
	// the other nodes' (flannel).
	Kubeconfig string
	// Firewall is FirewallIPTables or FirewallNFTables, kube-proxy's mode: pod traffic is
	// masqueraded with it, and portmap is told it (left to choose, portmap runs iptables twice
	// for every pod created and deleted, more than its own work on a small box).
	Firewall string
	Log      *logrus.Logger
}

// Sysctls the pod network needs, set explicitly rather than as side effects of plugins.
var sysctls = map[string]string{
	"net/ipv4/ip_forward":                 "1",
	"net/bridge/bridge-nf-call-iptables":  "1",
	"net/bridge/bridge-nf-call-ip6tables": "1",
}

// New returns the network component: it waits for the node's pod CIDR, sets up the host and
// the overlay to the other nodes (flannel), writes the CNI configuration and stays until
// stopped (what it set up stays too: running pods depend on it). config is called when the
// component starts: the node learns the cluster's settings when it joins.
func New(config func() (Config, error)) component.Component {
	return component.Task("pod network", "", func(ctx context.Context, progress component.Progress) error {
		progress("the node to register")
		cfg, err := config()
		if err != nil {
			return err
		}
		if err := prepareHost(cfg); err != nil {
			return err
		}
		client, err := kubeclient.New(cfg.Kubeconfig)
		if err != nil {
			return err
		}
		type started struct {
			overlay *overlay
			err     error
		}
		ext, err := externalInterface(cfg)
		if err != nil {
			return err
		}
		overlayStarted := make(chan started, 1)
		go func() {
			o, err := newOverlay(ctx, cfg, ext)
			overlayStarted <- started{o, err}
		}()
		podCIDR, err := kubeclient.WaitPodCIDR(ctx, client, cfg.NodeName, progress)
		if err != nil {
			return err
		}
		// Pods on this node need only the pod CIDR and the MTU: the node is Ready without
		// waiting for flannel's subnet manager, which polls its informer once a second. Pods
		// reach other nodes once flannel runs, a moment later.
		mtu := podMTU(cfg, ext)
		if err := writeConfList(cfg, podCIDR, mtu); err != nil {
			return err
		}
		progress("flannel's view of the nodes")
		var o started
		select {
		case o = <-overlayStarted:
		case <-ctx.Done():
			return ctx.Err()
		}
		if o.err != nil {
			return o.err
		}
		flannelMTU, err := o.overlay.start(ctx, cfg, progress)
		if err != nil {
			return err
		}
		if flannelMTU == mtu {
			return nil
		}
		cfg.Log.Warnf("pod network: flannel's pod MTU is %d, not %d: pods started before now keep %d", flannelMTU, mtu, mtu)
		return writeConfList(cfg, podCIDR, flannelMTU)
	})
}

// The firewalls kube-proxy and the pod network use, named as kube-proxy's modes and portmap's
// backends name them.
const (
	FirewallIPTables = "iptables"
	FirewallNFTables = "nftables"
)

// prepareHost sets the sysctls, the routes and the masquerade rule.
func prepareHost(cfg Config) error {
	if _, err := os.Stat("/proc/sys/net/bridge"); err != nil {
		// br_netfilter makes bridged pod traffic visible to kube-proxy's rules.
		if out, err := exec.Command("modprobe", "br_netfilter").CombinedOutput(); err != nil {
			return fmt.Errorf("the kernel lacks br_netfilter (modprobe: %v: %s); load the module or build it into the kernel", err, strings.TrimSpace(string(out)))
		}
	}
	for key, value := range sysctls {
		if err := os.WriteFile(filepath.Join("/proc/sys", key), []byte(value), 0o644); err != nil {
			return fmt.Errorf("setting %s=%s: %w", strings.ReplaceAll(key, "/", "."), value, err)
		}
	}
	if err := ensureRoutes(cfg); err != nil {
		return err
	}
	if cfg.Firewall == FirewallNFTables {
		return ensureNFTMasquerade(cfg)
	}
	return ensureMasquerade(cfg)
}

// ensureRoutes keeps every cluster-CIDR and service-CIDR packet on this machine (field notes
// §11): pod subnets are more specific routes (cni0, or other nodes), the rest of the cluster
// CIDR is a blackhole; the service CIDR goes to a dummy interface, so that a host-originated
// packet to a ClusterIP is routed, DNAT-ed by kube-proxy and rerouted, and whatever is not
// rewritten dies there.
func ensureRoutes(cfg Config) error {
	blackhole := &netlink.Route{Dst: cfg.ClusterCIDR, Type: unix.RTN_BLACKHOLE, Table: unix.RT_TABLE_MAIN, Protocol: routeProtocol}
	if err := netlink.RouteReplace(blackhole); err != nil {
		return fmt.Errorf("adding blackhole route for %s: %w", cfg.ClusterCIDR, err)
	}
	link, err := netlink.LinkByName(layout.ServiceDummy)
	if err != nil {
		var notFound netlink.LinkNotFoundError
		if !errors.As(err, &notFound) {
			return fmt.Errorf("looking up %s: %w", layout.ServiceDummy, err)
		}
		attrs := netlink.LinkAttrs{Name: layout.ServiceDummy}
		if err := netlink.LinkAdd(&netlink.Dummy{LinkAttrs: attrs}); err != nil {
			// Kernels without the dummy module: a bridge with no ports drops what it is
			// given just the same.
			if bridgeErr := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); bridgeErr != nil {
				return fmt.Errorf("creating interface %s for the service CIDR route: dummy: %v; bridge: %w (the kernel needs the dummy or bridge module)", layout.ServiceDummy, err, bridgeErr)
			}
		}
		if link, err = netlink.LinkByName(layout.ServiceDummy); err != nil {
			return err
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("bringing up %s: %w", layout.ServiceDummy, err)
	}
	route := &netlink.Route{Dst: cfg.ServiceCIDR, LinkIndex: link.Attrs().Index, Table: unix.RT_TABLE_MAIN, Protocol: routeProtocol}
	if err := netlink.RouteReplace(route); err != nil {
		return fmt.Errorf("routing %s to %s: %w", cfg.ServiceCIDR, layout.ServiceDummy, err)
	}
	return nil
}

// ensureMasquerade masquerades pod traffic that leaves the cluster CIDR, and only that, with
// iptables (ensureNFTMasquerade does it on hosts that only have nft, where kube-proxy runs in
// nftables mode).
func ensureMasquerade(cfg Config) error {
	ipt := utiliptables.New(utiliptables.ProtocolIPv4)
	chain := utiliptables.Chain(layout.MasqueradeChain)
	if _, err := ipt.EnsureChain(utiliptables.TableNAT, chain); err != nil {
		return fmt.Errorf("creating iptables chain %s: %w", layout.MasqueradeChain, err)
	}
	if _, err := ipt.EnsureRule(utiliptables.Append, utiliptables.TableNAT, chain,
		"-s", cfg.ClusterCIDR.String(), "!", "-d", cfg.ClusterCIDR.String(),
		"-m", "comment", "--comment", "k1s: pod traffic leaving the cluster",
		"-j", "MASQUERADE", "--random-fully"); err != nil {
		return fmt.Errorf("adding masquerade rule: %w", err)
	}
	if _, err := ipt.EnsureRule(utiliptables.Prepend, utiliptables.TableNAT, utiliptables.ChainPostrouting,
		"-m", "comment", "--comment", "k1s masquerade", "-j", layout.MasqueradeChain); err != nil {
		return fmt.Errorf("jumping to %s: %w", layout.MasqueradeChain, err)
	}
	// Pod traffic between nodes is forwarded even where the FORWARD policy is DROP (as
	// Docker sets it).
	forward := utiliptables.Chain(layout.ForwardChain)
	if _, err := ipt.EnsureChain(utiliptables.TableFilter, forward); err != nil {
		return fmt.Errorf("creating iptables chain %s: %w", layout.ForwardChain, err)
	}
	for _, dir := range []string{"-s", "-d"} {
		if _, err := ipt.EnsureRule(utiliptables.Append, utiliptables.TableFilter, forward,
			dir, cfg.ClusterCIDR.String(), "-m", "comment", "--comment", "k1s: pod traffic", "-j", "ACCEPT"); err != nil {
			return fmt.Errorf("adding forward rule: %w", err)
		}
	}
	if _, err := ipt.EnsureRule(utiliptables.Append, utiliptables.TableFilter, utiliptables.ChainForward,
		"-m", "comment", "--comment", "k1s forward", "-j", layout.ForwardChain); err != nil {
		return fmt.Errorf("jumping to %s: %w", layout.ForwardChain, err)
	}
	return nil
}

// NFTTable is k1s's own nftables table (ip family).
const NFTTable = layout.NFTablesTable

func ensureNFTMasquerade(cfg Config) error {
	nft, err := knftables.New(knftables.IPv4Family, NFTTable)
	if err != nil {
		return fmt.Errorf("neither iptables nor a usable nft is available for pod masquerading: %w", err)
	}
	tx := nft.NewTransaction()
	tx.Add(&knftables.Table{Comment: knftables.PtrTo("k1s pod network")})
	tx.Add(&knftables.Chain{Name: "postrouting", Type: knftables.PtrTo(knftables.NATType),
		Hook: knftables.PtrTo(knftables.PostroutingHook), Priority: knftables.PtrTo(knftables.SNATPriority)})
	tx.Flush(&knftables.Chain{Name: "postrouting"})
	tx.Add(&knftables.Rule{Chain: "postrouting", Rule: knftables.Concat(
		"ip saddr", cfg.ClusterCIDR.String(), "ip daddr !=", cfg.ClusterCIDR.String(), "masquerade fully-random")})
	if err := nft.Run(context.Background(), tx); err != nil {
		return fmt.Errorf("adding the nftables masquerade rule: %w", err)
	}
	return nil
}

func writeConfList(cfg Config, podCIDR *net.IPNet, mtu int) error {
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       layout.CNINetworkName,
		"plugins": []any{
			map[string]any{
				"type":        "bridge",
				"bridge":      layout.BridgeName,
				"isGateway":   true,
				"mtu":         mtu,
				"ipMasq":      false,
				"hairpinMode": true,
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  [][]map[string]string{{{"subnet": podCIDR.String()}}},
					"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
					"dataDir": cfg.IPAMDir,
				},
			},
			map[string]any{"type": "portmap", "backend": cfg.Firewall, "capabilities": map[string]bool{"portMappings": true}},
			map[string]any{"type": "bandwidth", "capabilities": map[string]bool{"bandwidth": true}},
		},
	}
	data, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return err
	}
	return fileutil.WriteAtomic(cfg.ConfList, data, 0o644)
}
