package netpol

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Queue is the NFQUEUE number the policy engine reads packets from (the library's default).
const Queue = 100

// Datapath is how packets reach the policy engine.
type Datapath int

const (
	// DatapathNFTables: the library's own nftables table queues the new connections of the
	// local pods that policies select.
	DatapathNFTables Datapath = iota
	// DatapathIPTables: the kernel's nftables cannot queue (no CONFIG_NFT_QUEUE), so k1s
	// queues with the iptables NFQUEUE target, which is a separate module (xt_NFQUEUE).
	DatapathIPTables
)

func (d Datapath) String() string {
	if d == DatapathIPTables {
		return "iptables NFQUEUE (the kernel's nftables cannot queue)"
	}
	return "nftables queue"
}

// Firewalls, as kube-proxy's modes name them (network.FirewallIPTables, FirewallNFTables).
const (
	firewallIPTables = "iptables"
	firewallNFTables = "nftables"
)

// Choose picks the datapath from the nftables queue probe's result and the node's firewall
// (kube-proxy's mode: iptables only if the host has the iptables tool).
func Choose(nftQueueErr error, firewall string) (Datapath, error) {
	if nftQueueErr == nil {
		return DatapathNFTables, nil
	}
	if firewall == firewallIPTables {
		return DatapathIPTables, nil
	}
	return 0, fmt.Errorf("this node cannot enforce NetworkPolicy: its nftables cannot queue packets (%v: the kernel lacks CONFIG_NFT_QUEUE) and iptables is not installed; install iptables, or start the servers with --disable-network-policy", nftQueueErr)
}

// ChainRules are the rules of layout.NetworkPolicyChain on a node whose pods are in podCIDR:
// they send the first packet of every connection from or to a local pod to the engine, as the
// library's nftables rules do (without their set of selected pods: the engine accepts what no
// policy selects). --queue-bypass accepts while no engine listens (a k1s restart must not cut
// pods' new connections).
func ChainRules(podCIDR *net.IPNet, queue int) [][]string {
	target := []string{"-j", "NFQUEUE", "--queue-num", strconv.Itoa(queue), "--queue-bypass"}
	return [][]string{
		{"-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "RETURN"},
		// The library lets the node's root processes through (kubelet probes, system
		// daemons): kube-network-policies#65.
		{"-m", "owner", "--uid-owner", "0", "-j", "RETURN"},
		append([]string{"-s", podCIDR.String()}, target...),
		append([]string{"-d", podCIDR.String()}, target...),
	}
}

// JumpRule sends mangle POSTROUTING through the chain: after DNAT, so a Service's traffic is
// judged by its endpoint's address, and before SNAT, so by the pod's own.
func JumpRule(chain string) []string {
	return []string{"-m", "comment", "--comment", "k1s network policy", "-j", chain}
}

// NeedsBug1766Fix reports whether a kernel release (uname -r) predates 6.12, which fixed a
// conntrack race that drops parallel DNS queries of queued connections
// (https://bugzilla.netfilter.org/show_bug.cgi?id=1766); the library then queues DNS after
// DNAT instead. Unparsable releases get the fix: it costs little.
func NeedsBug1766Fix(release string) bool {
	major, rest, ok := strings.Cut(release, ".")
	if !ok {
		return true
	}
	minor := rest
	if i := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		minor = rest[:i]
	}
	maj, err1 := strconv.Atoi(major)
	mnr, err2 := strconv.Atoi(minor)
	if err1 != nil || err2 != nil {
		return true
	}
	return maj < 6 || maj == 6 && mnr < 12
}
