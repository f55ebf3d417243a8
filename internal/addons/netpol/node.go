// Package netpol is the network-policy add-on's node side: every node enforces the
// NetworkPolicies of its own pods in-process with sigs.k8s.io/kube-network-policies, which
// judges the first packet of each connection in userspace (NFQUEUE) against the policies.
package netpol

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/kube-network-policies/pkg/networkpolicy"

	"github.com/k1s-io/k1s/internal/kubeclient"
	"github.com/k1s-io/k1s/internal/layout"
)

// Node runs the policy engine on one node.
type Node struct {
	NodeName string
	// Firewall is kube-proxy's mode (network.FirewallIPTables or FirewallNFTables).
	Firewall string
	Client   func() (kubernetes.Interface, error)
	Log      logrus.FieldLogger

	ready atomic.Bool
}

func (n *Node) Name() string { return "network policy" }

// Ready is true once the engine has the cluster's pods, namespaces and policies.
func (n *Node) Ready(context.Context) error {
	if !n.ready.Load() {
		return fmt.Errorf("reading the pods, namespaces and NetworkPolicies for node %s", n.NodeName)
	}
	return nil
}

// Run enforces until ctx ends, and then removes its rules.
func (n *Node) Run(ctx context.Context) error {
	datapath, err := Choose(ProbeNFTQueue(), n.Firewall)
	if err != nil {
		return err
	}
	n.Log.Infof("network policy: enforcing through %s", datapath)
	client, err := n.Client()
	if err != nil {
		return err
	}
	if err := n.waitAllowed(ctx, client); err != nil {
		return err
	}
	var podCIDR *net.IPNet
	if datapath == DatapathIPTables {
		if podCIDR, err = kubeclient.WaitPodCIDR(ctx, client, n.NodeName, func(string) {}); err != nil {
			return err
		}
	}
	// The engine needs every pod, not only this node's: policy peers are selected by labels.
	factory := informers.NewSharedInformerFactory(client, 0)
	pods := factory.Core().V1().Pods()
	namespaces := factory.Core().V1().Namespaces()
	policies := factory.Networking().V1().NetworkPolicies()
	// Built before the factory starts: it adds an index and a transform to the pod informer.
	engine, err := networkpolicy.NewController(client, policies, namespaces, noNRI{pods}, nil, nil, nil, nil,
		networkpolicy.Config{
			NodeName: n.NodeName,
			// Fail open: while k1s restarts (or the engine lags), pods' new connections pass
			// rather than break; policies apply again as soon as it runs.
			FailOpen:            true,
			QueueID:             Queue,
			NFTableName:         layout.NetworkPolicyNFTablesTable,
			NetfilterBug1766Fix: NeedsBug1766Fix(kernelRelease()),
			NRIdisabled:         true, // see noNRI
		})
	if err != nil {
		return fmt.Errorf("network policy engine: %w", err)
	}
	// Policy changes reach the iptables jump through this (one pending signal is enough).
	changed := make(chan struct{}, 1)
	if datapath == DatapathIPTables {
		signal := func(any) { signalOnce(changed) }
		if _, err := policies.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: signal, UpdateFunc: func(_, obj any) { signal(obj) }, DeleteFunc: signal,
		}); err != nil {
			return err
		}
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), pods.Informer().HasSynced, namespaces.Informer().HasSynced, policies.Informer().HasSynced) {
		return ctx.Err()
	}
	var ipt *ipTables
	if datapath == DatapathIPTables {
		ipt = newIPTables()
		defer ipt.remove(n.Log)
		if err := ipt.ensureChain(podCIDR); err != nil {
			return err
		}
	}
	engineDone := make(chan error, 1)
	go func() { engineDone <- engine.Run(ctx) }()
	n.ready.Store(true)
	jump := false
	for {
		if ipt != nil {
			want, err := anyPolicy(policies.Lister().List)
			if err == nil && want != jump {
				if err = ipt.setJump(want); err == nil {
					jump = want
				}
			}
			if err != nil {
				n.Log.Warnf("network policy: %v (retrying)", err)
				time.AfterFunc(time.Second, func() { signalOnce(changed) })
			}
		}
		select {
		case <-changed:
		case err := <-engineDone:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err == nil {
				err = fmt.Errorf("stopped")
			}
			return fmt.Errorf("network policy engine: %w (the kernel needs nfnetlink_queue)", err)
		case <-ctx.Done():
			// The engine deletes its nftables table when it stops: wait for it.
			<-engineDone
			return ctx.Err()
		}
	}
}

// signalOnce leaves one pending signal in c.
func signalOnce(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// anyPolicy reports whether the cluster has a NetworkPolicy (list is the lister's List).
func anyPolicy[T any](list func(labels.Selector) ([]T, error)) (bool, error) {
	all, err := list(labels.Everything())
	return len(all) > 0, err
}

// waitAllowed waits for the network-policy manifest's RBAC, which the server may not have
// applied yet when the node starts: an informer would log every failed list.
func (n *Node) waitAllowed(ctx context.Context, client kubernetes.Interface) error {
	return kubeclient.Retry(ctx, n.Log, "network policy: listing policies and pods", func(ctx context.Context) error {
		if _, err := client.NetworkingV1().NetworkPolicies("").List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
			return err
		}
		_, err := client.CoreV1().Pods("").List(ctx, metav1.ListOptions{Limit: 1})
		return err
	})
}
