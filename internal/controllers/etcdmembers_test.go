package controllers

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestDecideEtcd(t *testing.T) {
	now := metav1.Now()
	three := []EtcdMember{{1, "s1", []string{"10.0.0.1"}}, {2, "s2", []string{"10.0.0.2"}}, {3, "s3", []string{"10.0.0.3"}}}
	ips := map[string]string{"s1": "10.0.0.1", "s2": "10.0.0.2", "s3": "10.0.0.3", "agent": "10.0.0.9", "impostor": "10.0.0.9"}
	node := func(name string, deleting, finalizer bool) *corev1.Node {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ips[name]}}
		if name == "impostor" {
			n.Name = "s2"
		}
		if deleting {
			n.DeletionTimestamp = &now
		}
		if finalizer {
			n.Finalizers = []string{"other", EtcdMemberFinalizer}
		}
		return n
	}
	for _, tc := range []struct {
		what    string
		node    *corev1.Node
		members []EtcdMember
		want    etcdAction
		member  uint64
	}{
		{"a server's node gets the finalizer", node("s2", false, false), three, etcdAddFinalizer, 2},
		{"once", node("s2", false, true), three, etcdNothing, 0},
		{"an agent's node does not", node("agent", false, false), three, etcdNothing, 0},
		{"a deleted server's node removes its member", node("s3", true, true), three, etcdRemoveMember, 3},
		{"a member already gone releases the node", node("s3", true, true), three[:2], etcdRelease, 0},
		{"the last member stays", node("s1", true, true), three[:1], etcdRelease, 0},
		{"a node without the finalizer is not ours", node("s3", true, false), three, etcdNothing, 0},
		{"a node of a member's name at another address is not its", node("impostor", false, false), three, etcdNothing, 0},
	} {
		got, m := decideEtcd(tc.node, tc.members, true)
		if got != tc.want || (tc.member != 0) != (m != nil) || (m != nil && m.ID != tc.member) {
			t.Errorf("%s: got %v %v, want %v member %d", tc.what, got, m, tc.want, tc.member)
		}
	}
}
