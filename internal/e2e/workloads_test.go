//go:build e2e

package e2e

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// keeperManifest is a StatefulSet of one non-root pod on node %[1]s that writes %[2]s to its
// fresh volume, once.
const keeperManifest = `apiVersion: apps/v1
kind: StatefulSet
metadata: {name: keeper}
spec:
  serviceName: keeper
  replicas: 1
  selector: {matchLabels: {app: keeper}}
  template:
    metadata: {labels: {app: keeper}}
    spec:
      nodeSelector: {kubernetes.io/hostname: %[1]s}
      terminationGracePeriodSeconds: 1
      securityContext: {runAsUser: 1000, runAsGroup: 1000}
      containers:
      - name: main
        image: k1s.local/busybox:test
        imagePullPolicy: Never
        command: ["sh", "-c", "[ -f /data/f ] || echo %[2]s > /data/f || exit 1; exec sleep 3600"]
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
`

// checkLocalStorage runs a StatefulSet on node, with a volume of the default StorageClass:
// the pod writes as a non-root user, is deleted and recreated, reads its data back; deleting
// the claim removes the volume's directory on that node.
func checkLocalStorage(t *testing.T, c *cluster, node *clusterNode) {
	marker := "kept-" + randomToken(8)
	c.kubectl(t, "apply", "-f", c.file("keeper.yaml", fmt.Sprintf(keeperManifest, node.name, marker)))
	readBack := func(what string) string {
		var uid string
		waitFor(t, c, 3*time.Minute, what, func() error {
			out, err := c.server().kubectl("get", "pod", "keeper-0", "-o", `jsonpath={.status.phase} {.spec.nodeName} {.metadata.uid} {.metadata.deletionTimestamp}`)
			f := strings.Fields(out)
			if err != nil || len(f) != 3 || f[0] != "Running" || f[1] != node.name {
				return fmt.Errorf("pod keeper-0 (phase node uid deleted): %v %q", err, out)
			}
			data, err := c.server().kubectl("exec", "keeper-0", "--", "cat", "/data/f")
			if err != nil || strings.TrimSpace(data) != marker {
				return fmt.Errorf("/data/f: %v %q, want %s", err, data, marker)
			}
			uid = f[2]
			return nil
		})
		return uid
	}
	uid := readBack("the pod writes to its volume")

	volume := c.kubectl(t, "get", "pvc", "data-keeper-0", "-o", "jsonpath={.spec.volumeName}")
	dir := filepath.Join(node.proc.dataDir, "storage", volume+"_default_data-keeper-0")
	if data, err := os.ReadFile(filepath.Join(dir, "f")); err != nil || strings.TrimSpace(string(data)) != marker {
		t.Errorf("the volume is not in %s on node %s: %v %q", dir, node.name, err, data)
	}

	c.kubectl(t, "delete", "pod", "keeper-0", "--wait=false")
	eventually(t, 2*time.Minute, "keeper-0 recreated", func() error {
		if out, _ := c.server().kubectl("get", "pod", "keeper-0", "-o", "jsonpath={.metadata.uid}"); out == uid || out == "" {
			return fmt.Errorf("uid %q", out)
		}
		return nil
	})
	readBack("the recreated pod reads its data back")

	c.kubectl(t, "delete", "statefulset", "keeper")
	c.kubectl(t, "delete", "pvc", "data-keeper-0", "--wait=false")
	waitFor(t, c, 2*time.Minute, "the deleted claim's volume and directory removed", func() error {
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s on node %s: %v", dir, node.name, err)
		}
		if out, _ := c.server().kubectl("get", "pv", volume, "-o", "name", "--ignore-not-found"); out != "" {
			return fmt.Errorf("volume %s still exists", volume)
		}
		return nil
	})
}

// lbServiceManifest is a LoadBalancer Service %[1]s on port %[3]d for the web pod of node
// %[2]s, with externalTrafficPolicy %[4]s.
const lbServiceManifest = `apiVersion: v1
kind: Service
metadata: {name: %[1]s}
spec:
  type: LoadBalancer
  externalTrafficPolicy: %[4]s
  selector: {app: web, node: %[2]s}
  ports: [{port: %[3]d, targetPort: 8080}]
`

// checkServiceLB checks LoadBalancer Services served by servicelb, from a network namespace
// outside the nodes, for the web pod of node backend: the Service gets every node's address and
// each forwards to the pod; a second Service on the same port stays pending with an Event;
// externalTrafficPolicy Local gets only the backend's node and shows the client's address;
// deleting the Services leaves no rule on any node.
func checkServiceLB(t *testing.T, c *cluster, backend *clusterNode) {
	nodes := c.nodes()
	var addresses []string
	for _, n := range nodes {
		addresses = append(addresses, n.ip)
	}
	slices.Sort(addresses)
	outside := c.addNode("outside")
	get := func(url, want string) {
		t.Helper()
		eventually(t, time.Minute, "GET "+url+" from outside the nodes", func() error {
			out, err := outside.exec("curl", "-sS", "--noproxy", "*", "-m", "5", url)
			// busybox's httpd writes IPv4 clients as [::ffff:ADDR].
			if err != nil || strings.TrimSuffix(strings.Replace(strings.TrimSpace(out), "[::ffff:", "", 1), "]") != want {
				return fmt.Errorf("%v: %q, want %q", err, out, want)
			}
			return nil
		})
	}
	ingress := func(name string, want []string) {
		t.Helper()
		eventually(t, time.Minute, "Service "+name+" at "+strings.Join(want, " "), func() error {
			out, err := c.server().kubectl("get", "service", name, "-o", `jsonpath={range .status.loadBalancer.ingress[*]}{.ip}{" "}{end}`)
			if got := strings.Fields(out); err != nil || !slices.Equal(got, want) {
				return fmt.Errorf("%v: %v", err, got)
			}
			return nil
		})
	}

	c.kubectl(t, "apply", "-f", c.file("lb-web.yaml", fmt.Sprintf(lbServiceManifest, "lb-web", backend.name, 18080, "Cluster")))
	ingress("lb-web", addresses)
	for _, n := range nodes {
		get(fmt.Sprintf("http://%s:18080/", n.ip), "hello-from-"+backend.name)
	}

	c.kubectl(t, "apply", "-f", c.file("lb-web2.yaml", fmt.Sprintf(lbServiceManifest, "lb-web2", backend.name, 18080, "Cluster")))
	eventually(t, time.Minute, "lb-web2's PortInUse Event", func() error {
		out, err := c.server().kubectl("get", "events", "--field-selector", "involvedObject.name=lb-web2,reason=PortInUse", "-o", "jsonpath={.items[*].message}")
		if err != nil || !strings.Contains(out, "18080/TCP on node") || !strings.Contains(out, "held by Service default/lb-web") {
			return fmt.Errorf("%v: %q", err, out)
		}
		return nil
	})
	ingress("lb-web2", nil)

	c.kubectl(t, "apply", "-f", c.file("lb-local.yaml", fmt.Sprintf(lbServiceManifest, "lb-local", backend.name, 18081, "Local")))
	ingress("lb-local", []string{backend.ip})
	get(fmt.Sprintf("http://%s:18081/cgi-bin/ip", backend.ip), "client="+outside.ip)

	c.kubectl(t, "delete", "service", "lb-web", "lb-web2", "lb-local")
	eventually(t, time.Minute, "no rule of the deleted Services on any node", func() error {
		for _, n := range nodes {
			out, err := n.exec("iptables-save")
			if err != nil {
				return fmt.Errorf("node %s: %v", n.name, err)
			}
			if strings.Contains(out, "default/lb-") {
				return fmt.Errorf("node %s still has rules of default/lb-*", n.name)
			}
		}
		return nil
	})
}

// hpaManifest is a Deployment that requests CPU and a HorizontalPodAutoscaler on its CPU.
const hpaManifest = `apiVersion: apps/v1
kind: Deployment
metadata: {name: scaled}
spec:
  replicas: 1
  selector: {matchLabels: {app: scaled}}
  template:
    metadata: {labels: {app: scaled}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: k1s.local/busybox:test
        imagePullPolicy: Never
        command: [sleep, "3600"]
        resources: {requests: {cpu: 10m}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: scaled}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: scaled}
  minReplicas: 1
  maxReplicas: 2
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 80}}
`

// checkMetrics checks the metrics API: `kubectl top nodes` lists every node with CPU and memory
// in use, and `kubectl top pods -A` lists pod (namespace/name), which runs on an agent.
func checkMetrics(t *testing.T, c *cluster, nodes []string, pod string) {
	t.Helper()
	waitFor(t, c, 2*time.Minute, "kubectl top nodes", func() error {
		out, err := c.server().kubectl("top", "nodes", "--no-headers")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		for _, n := range nodes {
			found := false
			for _, l := range nonEmptyLines(out) {
				// NAME CPU(cores) CPU% MEMORY(bytes) MEMORY%
				if f := strings.Fields(l); len(f) >= 4 && f[0] == n && f[1] != "0m" && f[3] != "0Mi" {
					found = true
				}
			}
			if !found {
				return fmt.Errorf("node %s without CPU and memory in:\n%s", n, out)
			}
		}
		return nil
	})
	namespace, name, _ := strings.Cut(pod, "/")
	waitFor(t, c, 2*time.Minute, "kubectl top pods -A", func() error {
		out, err := c.server().kubectl("top", "pods", "-A", "--no-headers")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		for _, l := range nonEmptyLines(out) {
			if f := strings.Fields(l); len(f) >= 4 && f[0] == namespace && f[1] == name {
				return nil
			}
		}
		return fmt.Errorf("no pod %s in:\n%s", pod, out)
	})
}

// checkHPA checks that a HorizontalPodAutoscaler on CPU gets current metrics.
func checkHPA(t *testing.T, c *cluster) {
	c.kubectl(t, "apply", "-f", c.file("hpa.yaml", hpaManifest))
	waitFor(t, c, 3*time.Minute, "the HPA's current CPU", func() error {
		out, err := c.server().kubectl("get", "hpa", "scaled", "-o", "jsonpath={.status.currentMetrics[0].resource.current.averageUtilization}")
		if err != nil || out == "" {
			conditions, _ := c.server().kubectl("get", "hpa", "scaled", "-o", "jsonpath={.status.conditions}")
			return fmt.Errorf("%v %q; conditions: %s", err, out, conditions)
		}
		return nil
	})
	c.kubectl(t, "delete", "-f", c.file("hpa.yaml", hpaManifest), "--wait=false")
}

// netpolClientManifest is a namespace whose pods NetworkPolicies select by its label, with a
// client pod on node %[1]s.
const netpolClientManifest = `apiVersion: v1
kind: Namespace
metadata: {name: np-client, labels: {k1s-e2e: np-client}}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: np-client}
spec:
  nodeName: %[1]s
  terminationGracePeriodSeconds: 1
  containers:
  - {name: main, image: k1s.local/busybox:test, imagePullPolicy: Never, command: [sleep, "3600"]}
`

// netpolManifests are the policies checkNetworkPolicy applies, on the web pods of nodes %[1]s
// (the server side) and %[2]s (the client side); %[3]s is the server pod's address.
var netpolManifests = map[string]string{
	"deny": `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-web-%[1]s}
spec:
  podSelector: {matchLabels: {app: web, node: %[1]s}}
  policyTypes: [Ingress]
`,
	// From the web pod of node %[2]s, on the named port.
	"pods": `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-web-%[2]s}
spec:
  podSelector: {matchLabels: {app: web, node: %[1]s}}
  ingress:
  - from: [{podSelector: {matchLabels: {node: %[2]s}}}]
    ports: [{port: http}]
`,
	// From the np-client namespace, on a port range.
	"namespace": `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-np-client}
spec:
  podSelector: {matchLabels: {app: web, node: %[1]s}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {k1s-e2e: np-client}}}]
    ports: [{port: 8000, endPort: 8100}]
`,
	// The web pod of node %[2]s may reach the pod network but for the server pod.
	"egress": `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: egress-web-%[2]s}
spec:
  podSelector: {matchLabels: {app: web, node: %[2]s}}
  policyTypes: [Egress]
  egress:
  - to: [{ipBlock: {cidr: 10.42.0.0/16, except: [%[3]s/32]}}]
`,
}

// checkNetworkPolicy checks NetworkPolicies by real connections to the web pod of node server
// from pods on other nodes: default deny ingress, allow by pod selector on a named port, by
// namespace selector on a port range, egress deny by an ipBlock exception, and removal.
func checkNetworkPolicy(t *testing.T, c *cluster, server, client, other string, ips map[string]string) {
	c.kubectl(t, "apply", "-f", c.file("np-client.yaml", fmt.Sprintf(netpolClientManifest, other)))
	waitFor(t, c, 2*time.Minute, "np-client/client running", func() error {
		if out, err := c.server().kubectl("-n", "np-client", "get", "pod", "client", "-o", "jsonpath={.status.phase}"); err != nil || out != "Running" {
			return fmt.Errorf("%v %q", err, out)
		}
		return nil
	})
	target := ips[server] + ":8080"
	want := "hello-from-" + server
	// get tries one new connection from a pod (namespace/name) to target.
	get := func(pod string) bool {
		out, _ := podHTTP(c.server(), pod, target, 2)
		return strings.Contains(out, want)
	}
	// expect waits (a policy takes effect within 2 s) for every pod's connection to pass or
	// fail, then checks it once more.
	expect := func(what string, pass map[string]bool) {
		t.Helper()
		var last string
		for deadline := time.Now().Add(20 * time.Second); ; {
			last = ""
			for pod, ok := range pass {
				if get(pod) != ok {
					last += fmt.Sprintf(" %s: passes=%v, want %v;", pod, !ok, ok)
				}
			}
			if last == "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s:%s", what, last)
			}
			time.Sleep(time.Second)
		}
	}
	policy := func(name string) string {
		return c.file("np-"+name+".yaml", fmt.Sprintf(netpolManifests[name], server, client, ips[server]))
	}
	fromClient, fromOther, fromNamespace := "default/"+webPod(client), "default/"+webPod(other), "np-client/client"
	expect("no policy", map[string]bool{fromClient: true, fromOther: true, fromNamespace: true})

	c.kubectl(t, "apply", "-f", policy("deny"))
	expect("default deny ingress", map[string]bool{fromClient: false, fromOther: false, fromNamespace: false})

	c.kubectl(t, "apply", "-f", policy("pods"))
	expect("allowed from a pod selector on a named port", map[string]bool{fromClient: true, fromOther: false, fromNamespace: false})

	c.kubectl(t, "apply", "-f", policy("namespace"))
	expect("allowed from a namespace selector on a port range", map[string]bool{fromClient: true, fromOther: false, fromNamespace: true})

	c.kubectl(t, "apply", "-f", policy("egress"))
	expect("egress denied by an ipBlock exception", map[string]bool{fromClient: false, fromNamespace: true})
	if out, _ := podHTTP(c.server(), webPod(client), ips[other]+":8080", 2); !strings.Contains(out, "hello-from-"+other) {
		t.Errorf("the egress policy's ipBlock also blocks %s, which it allows", ips[other])
	}

	for _, name := range []string{"deny", "pods", "namespace", "egress"} {
		c.kubectl(t, "delete", "-f", policy(name))
	}
	expect("every policy removed", map[string]bool{fromClient: true, fromOther: true, fromNamespace: true})
	c.kubectl(t, "delete", "namespace", "np-client", "--wait=false")
}
