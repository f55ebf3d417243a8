package logging

import "strings"

// noise lists the upstream warnings a healthy start or stop prints by design. They are debug
// lines for k1s (still shown with --debug), so that a warning in k1s's log always means
// something to look at. Each entry says why it is not one; a warning that has a cause k1s can
// fix is fixed there instead (flags, configuration), not listed here.
var noise = []struct {
	// component is the line's component field; empty matches any.
	component string
	// message is the start of the line's message; empty matches any.
	message string
	// messageHas, if set, must occur in the message (raft's lines start with the member's ID).
	messageHas string
	// errorHas, if set, must occur in the line's error: the same message with another error
	// is worth seeing.
	errorHas string
	why      string
}{
	{component: "etcd", message: "Running http and grpc server on single port",
		why: "printed only when --etcd-arg listen-client-http-urls= puts etcd's HTTP endpoints back on the client port; its clients are the apiserver in the same process and the other servers' k1s, all gRPC, and the advice is for HTTP clients competing with gRPC ones"},
	{component: "etcd", messageHas: " cannot campaign at term ",
		why: "at a restart raft campaigns one tick after start (etcd's initial-election-tick-advance), and on a loaded machine etcd may still be applying the membership entries of its log; raft declines and campaigns again one election timeout later (0.25–0.5 s for a single server)"},
	{component: "etcd", message: "simple token is not cryptographically signed",
		why: "etcd's own authentication is off: its clients are authenticated by TLS client certificates, so no token is ever issued"},
	{component: "etcd", errorHas: "missing term information",
		why: "an upstream race (etcd#18978): a new member elects itself before its backend's first commit holds raft's term, and etcd's storage-version monitor, reading at once, finds none; it tries again every 4 s and then records the version"},
	{component: "etcd", errorHas: "missing confstate information",
		why: "the same race, with raft's configuration state the entry not yet committed"},
	{message: "The manifest file is empty, ignoring.",
		why: "component-base reads --allow-metric-labels-manifest even when it is unset (every component, at start)"},
	{component: "kube-controller-manager", message: "Unhandled Error", errorHas: "is not as new as written version",
		why: "a controller's read-after-write check finding its informer a write behind, at start; the item is requeued and synced at the next try"},
	{component: "kube-controller-manager", errorHas: "node updates may not change podCIDR except from",
		why: "an upstream race (kubernetes#127792): the node IPAM controller handles an update of a node from its informer before the informer has the node's new pod CIDR, and assigns a second one; the apiserver refuses to change a pod CIDR and the controller releases the second, so the node keeps its first. A CIDR that cannot be assigned for another reason (none left) still warns"},
	{errorHas: `namespaces "kube-system" not found`,
		why: "at a first start the apiserver's own controllers (its identity lease, the token-tracking ConfigMap) write to kube-system before the apiserver has created it; each retries within a second"},
	{component: "kube-apiserver", message: "Post-timeout activity",
		why: "a client gave up on a request before the apiserver answered it (k1s's own readiness polls while a loaded machine starts); the late answer is dropped"},
	{component: "kubelet", message: "Error updating node status, will retry", errorHas: "not found",
		why: "the kubelet's first status update can come before its Node is registered"},
	{component: "kubelet", message: "Error getting the current node from lister", errorHas: "not found",
		why: "the kubelet starts before it has registered its Node; k1s reports the node's registration itself"},
	{component: "kubelet", message: "Unable to register mirror pod because node is not registered yet",
		why: "same start-up order; k1s runs no static pods"},
	{component: "kubelet", message: "Failed to get node when trying to set owner ref to the node lease", errorHas: "not found",
		why: "same start-up order; the lease gets its owner at the next renewal"},
	{component: "kubelet", message: "Eviction manager: failed to get summary stats", errorHas: "not found",
		why: "same start-up order; the eviction manager retries every 10 s"},
	{component: "kubelet", message: "Image garbage collection failed once. Stats initialization may not have completed yet",
		why: "the image file system's stats come from cAdvisor's first housekeeping, seconds after start"},
	{component: "kubelet", message: "Failed to read data from checkpoint", errorHas: "checkpoint is not found",
		why: "a node's first start has no CPU/memory manager checkpoint yet"},
	{component: "kubelet", message: "eviction manager: failed to check if we have separate container filesystem",
		why: "containerd's snapshotter shares the node's file system (one imagefs); the kubelet then treats them as one, as intended"},
	{component: "kubelet", message: "Skipping pod synchronization", errorHas: "pleg has yet to be successful",
		why: "the pod lifecycle event generator's first relist, within a second of start"},
	{component: "kubelet", message: "Failed to get status for pod", errorHas: "no relationship found between node",
		why: "a pod just bound to the node: the kubelet's status manager reads it before the apiserver's node authorizer has seen the binding (kubernetes#49880: expected for a second or two); the status manager tries again"},
	{component: "kubelet", message: "Failed to set rlimit on max file handles",
		why: "only without CAP_SYS_RESOURCE (a container); the service unit sets LimitNOFILE itself, and k1s reports the missing capability at start"},
	{component: "kubelet", message: "Failed to ensure process in container with oom score", errorHas: "pid namespace of init",
		why: "only in a container, where the kubelet cannot see the host's init; it retries every minute and nothing depends on it"},
	{component: "kube-apiserver", message: "Unhandled Error", errorHas: "v1beta1.metrics.k8s.io",
		why: "k1s's metrics-server starts after the apiserver, which it needs for its delegated authentication, and moves with the controllers' lease: until it serves, the aggregator reports the APIService unavailable, at every start. The APIService's Available condition and kubectl top say whether it serves, and k1s logs the metrics-server's own failures"},
	{component: "kube-apiserver", message: "error resolving kube-system/metrics-server",
		why: "the same start: the metrics-server's endpoint is published once it runs"},
	{component: "kube-controller-manager", errorHas: "metrics.k8s.io/v1beta1: stale GroupVersion discovery",
		why: "the same start, seen by the controller-manager's discovery of every API group (garbage collector, quota): they take the metrics API in at their next resync, and use none of it"},
	{component: "metrics-server", message: "Failed to scrape node", errorHas: "connect: connection refused",
		why: "at a restart the metrics-server's first scrape comes before the node's kubelet listens again; a kubelet that stays down makes its Node NotReady, which says so"},
	{component: "metrics-server", message: "Failed to scrape node", errorHas: "remote error: tls: internal error",
		why: "a kubelet serves TLS only once its serving certificate is issued, and its CSR can be approved only for the addresses of its registered Node: for about a second after a node registers, its kubelet ends every handshake so. The next scrape, 15 s later, reaches it. A kubelet that stays without one says so itself: k1s warns of a serving CSR it denies, and the kubelet's certificate manager of one it cannot get or renew"},
	{component: "network-policy", message: "syncing", errorHas: "no such file or directory",
		why: "kube-network-policies retries its nftables table 5 times after each relevant change; on kernels without CONFIG_NFT_QUEUE the kernel refuses its queue rule (ENOENT), and k1s, which found that out at start and said which datapath it uses instead (iptables NFQUEUE), does not need the table"},
	{component: "network-policy", message: "Unhandled Error", errorHas: "no such file or directory",
		why: "the same refused table, reported once more when kube-network-policies gives up its 5 retries"},
}

// isNoise says whether an upstream warning is in the noise list.
func isNoise(component, message, errText string) bool {
	for _, n := range noise {
		if n.component != "" && n.component != component {
			continue
		}
		if !strings.HasPrefix(message, n.message) || !strings.Contains(message, n.messageHas) {
			continue
		}
		if n.errorHas != "" && !strings.Contains(errText, n.errorHas) {
			continue
		}
		return true
	}
	return false
}
