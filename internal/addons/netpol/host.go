package netpol

import (
	"errors"
	"fmt"
	"net"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
	utiliptables "k8s.io/kubernetes/pkg/util/iptables"

	"github.com/k1s-io/k1s/internal/layout"
)

// probeTable exists only inside the probe's transaction.
const probeTable = "k1s-netpol-probe"

// ProbeNFTQueue asks the kernel whether nftables can queue packets to userspace: one
// transaction adds a table with a queue rule and deletes it again, so nothing is left
// whatever the outcome; without the queue expression the kernel refuses the whole batch.
func ProbeNFTQueue() error {
	conn, err := nftables.New()
	if err != nil {
		return fmt.Errorf("opening nftables: %w", err)
	}
	table := conn.AddTable(&nftables.Table{Name: probeTable, Family: nftables.TableFamilyINet})
	chain := conn.AddChain(&nftables.Chain{Name: "probe", Table: table})
	conn.AddRule(&nftables.Rule{Table: table, Chain: chain,
		Exprs: []expr.Any{&expr.Queue{Num: Queue, Flag: expr.QueueFlagBypass}}})
	conn.DelTable(table)
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("nftables queue rule: %w", err)
	}
	return nil
}

// kernelRelease is uname -r.
func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// ipTables is the iptables datapath (IPv4 only: k1s's pod network is IPv4-only).
type ipTables struct {
	ipt   utiliptables.Interface
	chain utiliptables.Chain
	jump  []string
}

func newIPTables() *ipTables {
	return &ipTables{
		ipt:   utiliptables.New(utiliptables.ProtocolIPv4),
		chain: utiliptables.Chain(layout.NetworkPolicyChain),
		jump:  JumpRule(layout.NetworkPolicyChain),
	}
}

// ensureChain writes the chain's rules; nothing goes through it until setJump(true).
func (t *ipTables) ensureChain(podCIDR *net.IPNet) error {
	if _, err := t.ipt.EnsureChain(utiliptables.TableMangle, t.chain); err != nil {
		return fmt.Errorf("creating iptables chain %s: %w", t.chain, err)
	}
	if err := t.ipt.FlushChain(utiliptables.TableMangle, t.chain); err != nil {
		return fmt.Errorf("flushing iptables chain %s: %w", t.chain, err)
	}
	for _, rule := range ChainRules(podCIDR, Queue) {
		if _, err := t.ipt.EnsureRule(utiliptables.Append, utiliptables.TableMangle, t.chain, rule...); err != nil {
			return fmt.Errorf("adding a network policy rule to %s (the kernel needs xt_NFQUEUE, xt_conntrack, xt_owner): %w", t.chain, err)
		}
	}
	return nil
}

// setJump sends pod traffic through the chain or stops doing so. Without any NetworkPolicy
// the jump is absent: pods' connections then take no userspace detour.
func (t *ipTables) setJump(on bool) error {
	if on {
		// Prepended: an earlier ACCEPT in mangle POSTROUTING would skip the policies.
		if _, err := t.ipt.EnsureRule(utiliptables.Prepend, utiliptables.TableMangle, utiliptables.ChainPostrouting, t.jump...); err != nil {
			return fmt.Errorf("jumping to %s: %w", t.chain, err)
		}
		return nil
	}
	if err := t.ipt.DeleteRule(utiliptables.TableMangle, utiliptables.ChainPostrouting, t.jump...); err != nil {
		return fmt.Errorf("removing the jump to %s: %w", t.chain, err)
	}
	return nil
}

// remove deletes the jump and the chain (killall does the same after a crash).
func (t *ipTables) remove(log logrus.FieldLogger) {
	var errs []error
	errs = append(errs, t.setJump(false))
	if exists, err := t.ipt.ChainExists(utiliptables.TableMangle, t.chain); err == nil && exists {
		errs = append(errs, t.ipt.FlushChain(utiliptables.TableMangle, t.chain), t.ipt.DeleteChain(utiliptables.TableMangle, t.chain))
	}
	if err := errors.Join(errs...); err != nil {
		log.Warnf("network policy: removing iptables chain %s: %v (k1s killall removes it)", t.chain, err)
	}
}
