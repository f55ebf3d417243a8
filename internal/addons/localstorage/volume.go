// Package localstorage is the local-storage add-on: volumes that are directories on the node
// a pod was scheduled to. A server's provisioner (sig-storage-lib-external-provisioner) creates
// the PersistentVolumes; each node creates and removes the directories of its own volumes,
// which it finds through the API, so no helper pod runs.
package localstorage

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The names the provisioner and the nodes agree on.
const (
	// ProvisionerName is the StorageClass's provisioner.
	ProvisionerName = "k1s.io/local-path"
	// NodeLabel names the node a volume lives on: each node watches its own volumes by it.
	NodeLabel = "local-storage.k1s.io/node"
	// PathAnnotation on a Node is the directory that node keeps its volumes in
	// (--default-local-storage-path).
	PathAnnotation = "local-storage.k1s.io/path"
	// Finalizer keeps a deleted volume until its node has removed the directory.
	Finalizer = "local-storage.k1s.io/cleanup"
	// protectionFinalizer is the controller-manager's: while it is there, the volume is still
	// in use and its data must stay.
	protectionFinalizer = "kubernetes.io/pv-protection"
	hostnameLabel       = "kubernetes.io/hostname"
)

// dirMode lets any pod user write to a fresh volume: the pod's user is not known when the
// directory is made (local-path-provisioner does the same).
const dirMode = 0o777

// NewVolume returns the PersistentVolume for claim on node, in a directory under storageDir
// (the node's PathAnnotation), or an error that says why the claim cannot be served.
func NewVolume(pvName string, claim *v1.PersistentVolumeClaim, reclaim v1.PersistentVolumeReclaimPolicy, node *v1.Node, storageDir string) (*v1.PersistentVolume, error) {
	for _, mode := range claim.Spec.AccessModes {
		if mode != v1.ReadWriteOnce && mode != v1.ReadWriteOncePod {
			return nil, fmt.Errorf("access mode %s is not supported by local-path: a volume lives on one node (use ReadWriteOnce or ReadWriteOncePod)", mode)
		}
	}
	if claim.Spec.Selector != nil {
		return nil, fmt.Errorf("local-path does not support a claim's selector")
	}
	if storageDir == "" || !filepath.IsAbs(storageDir) {
		return nil, fmt.Errorf("node %s has not published its local storage directory (annotation %s) yet: is its k1s running?", node.Name, PathAnnotation)
	}
	hostname := node.Labels[hostnameLabel]
	if hostname == "" {
		hostname = node.Name
	}
	directory := v1.HostPathDirectory
	return &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:       pvName,
			Labels:     map[string]string{NodeLabel: node.Name},
			Finalizers: []string{Finalizer},
		},
		Spec: v1.PersistentVolumeSpec{
			PersistentVolumeReclaimPolicy: reclaim,
			AccessModes:                   claim.Spec.AccessModes,
			VolumeMode:                    claim.Spec.VolumeMode,
			Capacity:                      v1.ResourceList{v1.ResourceStorage: claim.Spec.Resources.Requests[v1.ResourceStorage]},
			PersistentVolumeSource: v1.PersistentVolumeSource{
				// Type Directory: the kubelet waits for the node to make it (with dirMode)
				// rather than making it itself, owned by root and not writable by others.
				HostPath: &v1.HostPathVolumeSource{Path: filepath.Join(storageDir, dirName(pvName, claim)), Type: &directory},
			},
			NodeAffinity: &v1.VolumeNodeAffinity{Required: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{{
				MatchExpressions: []v1.NodeSelectorRequirement{{Key: hostnameLabel, Operator: v1.NodeSelectorOpIn, Values: []string{hostname}}},
			}}}},
		},
	}, nil
}

// dirName names a volume's directory as local-path-provisioner does, so that a user finds a
// claim's data by its name.
func dirName(pvName string, claim *v1.PersistentVolumeClaim) string {
	return strings.Join([]string{pvName, claim.Namespace, claim.Name}, "_")
}

// Action is what a node does for one of its volumes.
type Action int

const (
	// Keep: nothing to do.
	Keep Action = iota
	// Create the directory.
	Create
	// Remove the directory, then the finalizer.
	Remove
	// Release: drop the finalizer and keep the data (a Retain volume deleted by hand).
	Release
)

// Decide says what the node whose volumes live in storageDir does for pv, and the directory it
// acts on. A directory outside storageDir is never touched: a volume's path comes from the API.
func Decide(pv *v1.PersistentVolume, storageDir string) (Action, string, error) {
	if pv.Spec.HostPath == nil {
		return Keep, "", nil
	}
	dir := filepath.Clean(pv.Spec.HostPath.Path)
	if storageDir == "" || filepath.Dir(dir) != filepath.Clean(storageDir) {
		return Keep, dir, fmt.Errorf("volume %s: %s is not a directory of %s, this node's local storage: left alone", pv.Name, dir, storageDir)
	}
	if pv.DeletionTimestamp == nil {
		return Create, dir, nil
	}
	if !slices.Contains(pv.Finalizers, Finalizer) || slices.Contains(pv.Finalizers, protectionFinalizer) {
		return Keep, dir, nil
	}
	if pv.Spec.PersistentVolumeReclaimPolicy == v1.PersistentVolumeReclaimDelete {
		return Remove, dir, nil
	}
	return Release, dir, nil
}
