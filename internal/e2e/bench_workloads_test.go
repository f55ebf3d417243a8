//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// workloadAddons are the packaged add-ons for workloads, whose memory BenchmarkWorkloads
// prints.
var workloadAddons = []string{"local-storage", "metrics-server", "network-policy", "servicelb"}

// BenchmarkWorkloads prints, for a one-node cluster, what the workload add-ons cost and how
// quick they are: idle PSS with all of them, with none, and without each; PVC created to its
// pod Running on the volume; LoadBalancer Service created to answering on the node's address.
// It asserts nothing.
func BenchmarkWorkloads(b *testing.B) {
	const runs = 5
	// Alternating, three of each: memory and start-up with every workload add-on and with none.
	var allPSS, nonePSS []float64
	var allReady, noneReady []time.Duration
	for i := 0; i < 3; i++ {
		pss, ready := idleCluster(b, nil)
		allPSS, allReady = append(allPSS, pss), append(allReady, ready)
		pss, ready = idleCluster(b, workloadAddons)
		nonePSS, noneReady = append(nonePSS, pss), append(noneReady, ready)
	}
	all, none := medianOf(allPSS), medianOf(nonePSS)
	fmt.Printf("idle PSS 45 s after ready (median of 3): all add-ons %.0f MB, none of %s %.0f MB: %+.0f MB (budget +60)\n",
		all, strings.Join(workloadAddons, ", "), none, all-none)
	fmt.Printf("exec to node Ready (median of 3): all add-ons %s, none %s (budget +5 %%)\n", median(allReady), median(noneReady))
	b.ReportMetric(all, "MB-PSS-idle-all-addons")
	b.ReportMetric(none, "MB-PSS-idle-no-addons")
	for _, a := range workloadAddons {
		without, _ := idleCluster(b, []string{a})
		fmt.Printf("  without %s: %.0f MB (its share: %+.0f MB; a single run, ±5 MB is noise)\n", a, without, all-without)
	}

	s := prepareCluster(b, clusterSpec{Servers: 1}).server()
	coldStart(b, s)
	client := s.client()
	ctx := context.Background()
	var volume, lb []time.Duration
	for i := 0; i < runs; i++ {
		name := fmt.Sprintf("bench-pvc-%d", i)
		claim := &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
			},
		}
		pod := benchPod(name)
		pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}
		pod.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: name}}}}
		begin := time.Now()
		if _, err := client.CoreV1().PersistentVolumeClaims("default").Create(ctx, claim, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		if _, err := client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		volume = append(volume, pollUntil(b, begin, func() bool {
			p, err := client.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
			return err == nil && p.Status.Phase == corev1.PodRunning
		}))
	}
	web := benchPod("bench-web")
	web.Labels = map[string]string{"app": "bench-web"}
	web.Spec.Containers[0].Command = []string{"sh", "-c", "mkdir -p /www && echo bench > /www/index.html && exec httpd -f -p 8080 -h /www"}
	if _, err := client.CoreV1().Pods("default").Create(ctx, web, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	pollUntil(b, time.Now(), func() bool {
		p, err := client.CoreV1().Pods("default").Get(ctx, web.Name, metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.PodRunning
	})
	nodeIP := s.mustKubectl("get", "nodes", "-o", `jsonpath={.items[0].status.addresses[?(@.type=="InternalIP")].address}`)
	for i := 0; i < runs; i++ {
		port := int32(18100 + i)
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bench-lb-%d", i)},
			Spec: corev1.ServiceSpec{
				Type:     corev1.ServiceTypeLoadBalancer,
				Selector: map[string]string{"app": "bench-web"},
				Ports:    []corev1.ServicePort{{Port: port, TargetPort: intstr.FromInt32(8080)}},
			},
		}
		begin := time.Now()
		if _, err := client.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		lb = append(lb, pollUntil(b, begin, func() bool {
			body, err := httpGet(fmt.Sprintf("%s:%d", nodeIP, port))
			return err == nil && body == "bench"
		}))
	}
	printFigure(b, "PVC created to its pod Running", volume, 0, "s-pvc-pod-running")
	printFigure(b, "LoadBalancer Service to answering", lb, 0, "s-loadbalancer-answering")
	stopNode(b, s)
}

// idleCluster starts a one-node cluster with the add-ons disabled and returns its PSS 45 s
// after its node is Ready, and how long it took to be Ready.
func idleCluster(b *testing.B, disabled []string) (float64, time.Duration) {
	b.Helper()
	var args []string
	for _, d := range disabled {
		args = append(args, "--disable", d)
	}
	s := prepareCluster(b, clusterSpec{Servers: 1, ServerArgs: args}).server()
	ready, _, _ := coldStart(b, s)
	time.Sleep(45 * time.Second)
	pss, _, _ := memory(s)
	stopNode(b, s)
	return pss, ready
}

func medianOf(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkNetworkPolicy prints, for a one-node cluster, how long a NetworkPolicy takes from
// its creation to a pod's new connection being refused, and from its deletion to the next one
// passing. Each try is a kubectl exec (about 0.3 s here), which bounds the figure's precision.
// It asserts nothing.
func BenchmarkNetworkPolicy(b *testing.B) {
	const runs = 5
	s := prepareCluster(b, clusterSpec{Servers: 1}).server()
	coldStart(b, s)
	client := s.client()
	ctx := context.Background()
	server := benchPod("np-server")
	server.Labels = map[string]string{"app": "np-server"}
	server.Spec.Containers[0].Command = []string{"sh", "-c", "mkdir -p /www && echo np > /www/index.html && exec httpd -f -p 8080 -h /www"}
	for _, p := range []*corev1.Pod{server, benchPod("np-client")} {
		if _, err := client.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	var ip string
	pollUntil(b, time.Now(), func() bool {
		ready := 0
		for _, name := range []string{"np-server", "np-client"} {
			p, err := client.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
			if err == nil && p.Status.Phase == corev1.PodRunning {
				ready++
				if name == "np-server" {
					ip = p.Status.PodIP
				}
			}
		}
		return ready == 2
	})
	passes := func() bool {
		out, _ := podHTTP(s, "np-client", ip+":8080", 1)
		return strings.Contains(out, "np")
	}
	pollUntil(b, time.Now(), passes)
	var blocked, restored []time.Duration
	for i := 0; i < runs; i++ {
		policy := &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bench-deny-%d", i)},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "np-server"}},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			},
		}
		begin := time.Now()
		if _, err := client.NetworkingV1().NetworkPolicies("default").Create(ctx, policy, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		blocked = append(blocked, pollUntil(b, begin, func() bool { return !passes() }))
		begin = time.Now()
		if err := client.NetworkingV1().NetworkPolicies("default").Delete(ctx, policy.Name, metav1.DeleteOptions{}); err != nil {
			b.Fatal(err)
		}
		restored = append(restored, pollUntil(b, begin, passes))
	}
	printFigure(b, "NetworkPolicy created to connection refused", blocked, 2*time.Second, "s-netpol-blocked")
	printFigure(b, "NetworkPolicy deleted to connection passing", restored, 2*time.Second, "s-netpol-restored")
	stopNode(b, s)
}
