package network

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/flannel-io/flannel/pkg/backend"
	_ "github.com/flannel-io/flannel/pkg/backend/hostgw" // registers the host-gw backend
	_ "github.com/flannel-io/flannel/pkg/backend/vxlan"  // registers the vxlan backend
	"github.com/flannel-io/flannel/pkg/subnet"
	"github.com/flannel-io/flannel/pkg/subnet/kube"

	"github.com/k1s-io/k1s/internal/component"
	"github.com/k1s-io/k1s/internal/fileutil"
)

// FlannelPrefix is the prefix of the Node annotations flannel keeps its per-node data in
// (flannel's default, so that tools that know flannel read them).
const FlannelPrefix = "flannel.alpha.coreos.com"

// overlay is flannel's Kubernetes subnet manager for this node, started before the node has a
// pod CIDR: its node informer takes a second to report synced (flannel polls it once a
// second), which then overlaps the wait for the controller-manager.
type overlay struct {
	ext *backend.ExternalInterface
	sm  subnet.Manager
}

// newOverlay starts flannel's subnet manager for the external interface ext; the "none"
// backend has none.
func newOverlay(ctx context.Context, cfg Config, ext *backend.ExternalInterface) (*overlay, error) {
	o := &overlay{ext: ext}
	if cfg.Backend == BackendNone {
		return o, nil
	}
	netConf := cfg.FlannelConf
	conf, err := json.Marshal(map[string]any{"Network": cfg.ClusterCIDR.String(), "Backend": map[string]string{"Type": cfg.Backend}})
	if err != nil {
		return nil, err
	}
	if err := fileutil.WriteAtomic(netConf, conf, 0o600); err != nil {
		return nil, err
	}
	// flannel's subnet manager reads the node's name only from the environment; this process
	// runs one node.
	if err := os.Setenv("NODE_NAME", cfg.NodeName); err != nil {
		return nil, err
	}
	if o.sm, err = kube.NewSubnetManager(ctx, "", cfg.Kubeconfig, FlannelPrefix, netConf, false); err != nil {
		return nil, fmt.Errorf("flannel: %w", err)
	}
	return o, nil
}

// start runs flannel's backend in this process, once the node has its pod CIDR, so that routes
// (host-gw) or a VXLAN device with its neighbour and FDB entries (vxlan) reach every other
// node's pod CIDR, and returns the MTU pods must use. It runs until ctx ends; what it set up
// stays for the pods that outlive k1s (killall removes it).
func (o *overlay) start(ctx context.Context, cfg Config, progress component.Progress) (int, error) {
	ext, sm := o.ext, o.sm
	if sm == nil {
		return ext.Iface.MTU, nil
	}
	netCfg, err := sm.GetNetworkConfig(ctx)
	if err != nil {
		return 0, fmt.Errorf("flannel: %w", err)
	}
	be, err := backend.NewManager(ctx, sm, ext).GetBackend(netCfg.BackendType)
	if err != nil {
		return 0, fmt.Errorf("flannel backend %s: %w", cfg.Backend, err)
	}
	var wg sync.WaitGroup
	var bn backend.Network
	for {
		// The lease is the node's spec.podCIDR, which exists by now; a failure here is the
		// API or the host, worth retrying.
		if bn, err = be.RegisterNetwork(ctx, &wg, netCfg); err == nil {
			break
		}
		progress(fmt.Sprintf("flannel's %s network (%v)", cfg.Backend, err))
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(time.Second):
		}
	}
	if err := sm.CompleteLease(ctx, bn.Lease(), &wg); err != nil {
		return 0, fmt.Errorf("flannel: %w", err)
	}
	// Run ends with ctx; nothing waits for it (it may linger in a rare upstream shutdown race).
	go bn.Run(ctx)
	cfg.Log.Infof("pod network: flannel %s over %s (%s), pod MTU %d", cfg.Backend, ext.IfaceName, ext.IfaceAddr, bn.MTU())
	return bn.MTU(), nil
}

// vxlanOverhead is what flannel's VXLAN backend takes off the external interface's MTU for
// its encapsulation (encapOverhead in flannel's vxlan package).
const vxlanOverhead = 50

// podMTU is the MTU flannel's backend will give pods: the CNI configuration is written with it
// before flannel has started, and checked against flannel's once it has.
func podMTU(cfg Config, ext *backend.ExternalInterface) int {
	if cfg.Backend == BackendVXLAN {
		return ext.Iface.MTU - vxlanOverhead
	}
	return ext.Iface.MTU
}

// externalInterface is the interface pod traffic to other nodes leaves by: --flannel-iface, or
// the one that holds the node IP.
func externalInterface(cfg Config) (*backend.ExternalInterface, error) {
	ip4 := cfg.NodeIP.To4()
	if ip4 == nil {
		return nil, fmt.Errorf("node IP %s is not IPv4: the pod network between nodes needs an IPv4 --node-ip", cfg.NodeIP)
	}
	var iface *net.Interface
	if cfg.Iface != "" {
		var err error
		if iface, err = net.InterfaceByName(cfg.Iface); err != nil {
			return nil, fmt.Errorf("--flannel-iface %s: %w", cfg.Iface, err)
		}
	} else {
		ifaces, err := net.Interfaces()
		if err != nil {
			return nil, err
		}
		for i := range ifaces {
			addrs, _ := ifaces[i].Addrs()
			for _, a := range addrs {
				if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip4) {
					iface = &ifaces[i]
				}
			}
		}
		if iface == nil {
			return nil, fmt.Errorf("no interface holds the node IP %s: give this host's address with --node-ip, or the interface with --flannel-iface", cfg.NodeIP)
		}
	}
	return &backend.ExternalInterface{Iface: iface, IfaceName: iface.Name, IfaceAddr: ip4, ExtAddr: ip4}, nil
}
