// Package servicelb is the servicelb add-on: every LoadBalancer Service (of no
// loadBalancerClass) gets the addresses of the nodes that may serve it, and kube-proxy's own
// rules for load-balancer addresses carry the traffic to its pods. Nothing runs on the nodes
// but kube-proxy: no DaemonSet, no image.
package servicelb

import (
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"

	v1 "k8s.io/api/core/v1"
)

const (
	// EnableLabel, once any node has it set to "true", limits the nodes that serve to those.
	EnableLabel = "svccontroller.k1s.io/enablelb"
	// ExternalIPAnnotation on a Node is its --node-external-ip, preferred to its InternalIP.
	ExternalIPAnnotation = "servicelb.k1s.io/external-ip"
	// excludeLabel is Kubernetes' own opt-out of external load balancers.
	excludeLabel = "node.kubernetes.io/exclude-from-external-load-balancers"
)

// Port is a protocol and port on a node's addresses.
type Port struct {
	Protocol v1.Protocol
	Port     int32
}

func (p Port) String() string { return fmt.Sprintf("%d/%s", p.Port, p.Protocol) }

// Handled says whether servicelb serves svc: k1s is the load balancer of Services without a
// class.
func Handled(svc *v1.Service) bool {
	return svc.Spec.Type == v1.ServiceTypeLoadBalancer && svc.Spec.LoadBalancerClass == nil
}

// Plan is the outcome for every handled Service.
type Plan struct {
	// Ingress is each Service's addresses, by namespace/name, sorted.
	Ingress map[string][]string
	// Conflicts says, per Service, why nodes were left out of it ("80/TCP on node a is held
	// by Service default/web").
	Conflicts map[string][]string
}

// Input is what a plan is made from.
type Input struct {
	Services []*v1.Service
	Nodes    []*v1.Node
	// LocalNodes names, per Service key, the nodes with a ready endpoint of it (for
	// externalTrafficPolicy Local).
	LocalNodes map[string][]string
	// Reserved are the ports k1s itself listens on, with who does.
	Reserved map[Port]string
}

// Key is a Service's namespace/name.
func Key(svc *v1.Service) string { return svc.Namespace + "/" + svc.Name }

// Decide assigns nodes to Services. Older Services keep their ports: a newer Service that asks
// for a port a node already serves for another does not get that node.
func Decide(in Input) Plan {
	plan := Plan{Ingress: map[string][]string{}, Conflicts: map[string][]string{}}
	services := slices.Clone(in.Services)
	sort.Slice(services, func(i, j int) bool {
		a, b := services[i], services[j]
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		return Key(a) < Key(b)
	})
	nodes := eligible(in.Nodes)
	held := map[string]map[Port]string{} // node → port → holder
	for _, svc := range services {
		if !Handled(svc) {
			continue
		}
		key := Key(svc)
		candidates := nodes
		if svc.Spec.ExternalTrafficPolicy == v1.ServiceExternalTrafficPolicyLocal {
			local := in.LocalNodes[key]
			candidates = slices.DeleteFunc(slices.Clone(nodes), func(n *v1.Node) bool { return !slices.Contains(local, n.Name) })
		}
		var addresses []string
		for _, node := range candidates {
			if reason := conflict(svc, node.Name, held[node.Name], in.Reserved); reason != "" {
				plan.Conflicts[key] = append(plan.Conflicts[key], reason)
				continue
			}
			if held[node.Name] == nil {
				held[node.Name] = map[Port]string{}
			}
			for _, p := range svc.Spec.Ports {
				held[node.Name][Port{protocol(p), p.Port}] = "Service " + key
			}
			if addr := address(node); addr != "" && !slices.Contains(addresses, addr) {
				addresses = append(addresses, addr)
			}
		}
		sort.Strings(addresses)
		plan.Ingress[key] = addresses
	}
	return plan
}

// conflict says why svc cannot have its ports on node, or "".
func conflict(svc *v1.Service, node string, held map[Port]string, reserved map[Port]string) string {
	for _, p := range svc.Spec.Ports {
		port := Port{protocol(p), p.Port}
		if owner, ok := reserved[port]; ok {
			return fmt.Sprintf("%s is %s's port", port, owner)
		}
		if holder, ok := held[port]; ok {
			return fmt.Sprintf("%s on node %s is held by %s", port, node, holder)
		}
	}
	return ""
}

func protocol(p v1.ServicePort) v1.Protocol {
	if p.Protocol == "" {
		return v1.ProtocolTCP
	}
	return p.Protocol
}

// eligible are the Ready nodes that may serve: all of them, or, once a node has EnableLabel
// "true", only those; never a node excluded from external load balancers.
func eligible(nodes []*v1.Node) []*v1.Node {
	labelled := slices.ContainsFunc(nodes, func(n *v1.Node) bool { return n.Labels[EnableLabel] == "true" })
	var out []*v1.Node
	for _, n := range nodes {
		if !ready(n) || n.DeletionTimestamp != nil {
			continue
		}
		if _, excluded := n.Labels[excludeLabel]; excluded {
			continue
		}
		if labelled && n.Labels[EnableLabel] != "true" {
			continue
		}
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func ready(n *v1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == v1.NodeReady {
			return c.Status == v1.ConditionTrue
		}
	}
	return false
}

// address is the node's --node-external-ip if it published one, else its InternalIP.
func address(n *v1.Node) string {
	for _, ip := range strings.Split(n.Annotations[ExternalIPAnnotation], ",") {
		if net.ParseIP(strings.TrimSpace(ip)) != nil {
			return strings.TrimSpace(ip)
		}
	}
	for _, a := range n.Status.Addresses {
		if a.Type == v1.NodeInternalIP {
			return a.Address
		}
	}
	return ""
}
