package servicelb

import (
	"reflect"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func node(name, ip string, ready bool, labels map[string]string) *v1.Node {
	status := v1.ConditionFalse
	if ready {
		status = v1.ConditionTrue
	}
	return &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Status: v1.NodeStatus{
			Conditions: []v1.NodeCondition{{Type: v1.NodeReady, Status: status}},
			Addresses:  []v1.NodeAddress{{Type: v1.NodeHostName, Address: name}, {Type: v1.NodeInternalIP, Address: ip}},
		},
	}
}

func service(name string, age int, port int32, mutate ...func(*v1.Service)) *v1.Service {
	svc := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, CreationTimestamp: metav1.NewTime(time.Unix(int64(1000+age), 0))},
		Spec:       v1.ServiceSpec{Type: v1.ServiceTypeLoadBalancer, Ports: []v1.ServicePort{{Port: port}}},
	}
	for _, m := range mutate {
		m(svc)
	}
	return svc
}

func TestDecide(t *testing.T) {
	a, b := node("a", "10.0.0.1", true, nil), node("b", "10.0.0.2", true, nil)
	notReady := node("c", "10.0.0.3", false, nil)
	local := func(s *v1.Service) { s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal }
	udp := func(s *v1.Service) { s.Spec.Ports[0].Protocol = v1.ProtocolUDP }
	classed := func(s *v1.Service) { c := "metallb"; s.Spec.LoadBalancerClass = &c }
	reserved := map[Port]string{{v1.ProtocolTCP, 6443}: "the kube-apiserver"}

	for name, tc := range map[string]struct {
		in        Input
		want      map[string][]string
		conflicts map[string]string
	}{
		"every ready node": {
			in:   Input{Services: []*v1.Service{service("web", 0, 80)}, Nodes: []*v1.Node{b, a, notReady}},
			want: map[string][]string{"default/web": {"10.0.0.1", "10.0.0.2"}},
		},
		"the older Service keeps its port": {
			in:        Input{Services: []*v1.Service{service("new", 5, 80), service("old", 1, 80)}, Nodes: []*v1.Node{a}},
			want:      map[string][]string{"default/old": {"10.0.0.1"}, "default/new": nil},
			conflicts: map[string]string{"default/new": "80/TCP on node a is held by Service default/old"},
		},
		"another protocol is another port": {
			in:   Input{Services: []*v1.Service{service("tcp", 0, 53), service("udp", 1, 53, udp)}, Nodes: []*v1.Node{a}},
			want: map[string][]string{"default/tcp": {"10.0.0.1"}, "default/udp": {"10.0.0.1"}},
		},
		"k1s's own port": {
			in:        Input{Services: []*v1.Service{service("api", 0, 6443)}, Nodes: []*v1.Node{a}, Reserved: reserved},
			want:      map[string][]string{"default/api": nil},
			conflicts: map[string]string{"default/api": "6443/TCP is the kube-apiserver's port"},
		},
		"labelled nodes only, once one is": {
			in:   Input{Services: []*v1.Service{service("web", 0, 80)}, Nodes: []*v1.Node{a, node("b", "10.0.0.2", true, map[string]string{EnableLabel: "true"})}},
			want: map[string][]string{"default/web": {"10.0.0.2"}},
		},
		"excluded node": {
			in:   Input{Services: []*v1.Service{service("web", 0, 80)}, Nodes: []*v1.Node{a, node("b", "10.0.0.2", true, map[string]string{excludeLabel: ""})}},
			want: map[string][]string{"default/web": {"10.0.0.1"}},
		},
		"Local: nodes with an endpoint": {
			in:   Input{Services: []*v1.Service{service("web", 0, 80, local)}, Nodes: []*v1.Node{a, b}, LocalNodes: map[string][]string{"default/web": {"b"}}},
			want: map[string][]string{"default/web": {"10.0.0.2"}},
		},
		"Local: a port held only where served": {
			in: Input{Services: []*v1.Service{service("web", 0, 80, local), service("other", 1, 80)}, Nodes: []*v1.Node{a, b},
				LocalNodes: map[string][]string{"default/web": {"b"}}},
			want:      map[string][]string{"default/web": {"10.0.0.2"}, "default/other": {"10.0.0.1"}},
			conflicts: map[string]string{"default/other": "80/TCP on node b is held by Service default/web"},
		},
		"external IP": {
			in: Input{Services: []*v1.Service{service("web", 0, 80)}, Nodes: []*v1.Node{func() *v1.Node {
				n := node("a", "10.0.0.1", true, nil)
				n.Annotations = map[string]string{ExternalIPAnnotation: "203.0.113.7"}
				return n
			}()}},
			want: map[string][]string{"default/web": {"203.0.113.7"}},
		},
		"another class": {
			in:   Input{Services: []*v1.Service{service("web", 0, 80, classed)}, Nodes: []*v1.Node{a}},
			want: map[string][]string{},
		},
	} {
		t.Run(name, func(t *testing.T) {
			plan := Decide(tc.in)
			for key, want := range tc.want {
				if got := plan.Ingress[key]; !reflect.DeepEqual(got, want) && (len(got) != 0 || len(want) != 0) {
					t.Errorf("%s: ingress %v, want %v", key, got, want)
				}
			}
			if len(plan.Ingress) != len(tc.want) {
				t.Errorf("ingress for %d Services, want %d: %v", len(plan.Ingress), len(tc.want), plan.Ingress)
			}
			for key, want := range tc.conflicts {
				if got := strings.Join(plan.Conflicts[key], "; "); got != want {
					t.Errorf("%s: conflicts %q, want %q", key, got, want)
				}
			}
			if len(plan.Conflicts) != len(tc.conflicts) {
				t.Errorf("conflicts %v, want %v", plan.Conflicts, tc.conflicts)
			}
		})
	}
}
