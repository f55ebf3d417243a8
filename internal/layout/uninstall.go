package layout

// Host directories that upstream code creates for a node (the tops of SharedHostDirs under
// /var/lib). Other runtimes (a kubelet, a CNI plugin of another distribution) share them:
// `k1s killall` removes only this node's entries there, and removes the directories once
// empty; an uninstall never removes them whole.
const (
	// KubeletHostDir is the kubelet's fixed host directory (its device-plugin socket).
	KubeletHostDir = "/var/lib/kubelet"
	// CNIStateDir is the CNI library's fixed state directory (its cached results).
	CNIStateDir = "/var/lib/cni"
)

// KubeProxyNFTablesTable is the nftables table kube-proxy creates, in the ip and ip6 families;
// kube-proxy fixes the name.
const KubeProxyNFTablesTable = "kube-proxy"

// UninstallPaths are the paths an uninstall of the k1s node or server of data directory d
// removes whole, beyond the service's own files, after `k1s killall` stopped it and removed
// the node's entries from the host directories it shares with other runtimes
// (SharedHostDirs, PodLogsDir): the data directory, the runtime directory, and last the
// configuration directory (an uninstall that fails half-way and runs again must still find
// the data directory a config file there names). Only k1s keeps files in them. It is the one
// rule install.sh's uninstall script follows (through `k1s killall --print-paths`). d must be
// absolute.
func UninstallPaths(d DataDir) []string {
	return []string{
		d.Root(),
		RunDir,
		ConfigDir,
	}
}
