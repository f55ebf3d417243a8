// Package host owns what a k1s node changes on its host outside its data directory and must
// be able to undo: the kernel settings it sets (recorded before the first change, restored by
// killall) and the kubelet's cgroup root. It is small on purpose: killall and the node both use
// it.
package host
