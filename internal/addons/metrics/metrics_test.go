package metrics

import (
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"k8s.io/kube-openapi/pkg/validation/spec"
	"sigs.k8s.io/metrics-server/pkg/api"

	"github.com/k1s-io/k1s/internal/deploy"
	"github.com/k1s-io/k1s/internal/layout"
	"github.com/k1s-io/k1s/internal/pki"
	"github.com/k1s-io/k1s/manifests"
)

func testConfig(ip string, port int) Config {
	return Config{
		NodeIP:           net.ParseIP(ip),
		Port:             port,
		Kubeconfig:       "/d/cred/metrics-server.kubeconfig",
		Serving:          layout.Pair{Cert: "/d/tls/serving-metrics-server.crt", Key: "/d/tls/serving-metrics-server.key"},
		KubeletClient:    layout.Pair{Cert: "/d/tls/client-metrics-server.crt", Key: "/d/tls/client-metrics-server.key"},
		ServerCA:         "/d/tls/server-ca.crt",
		KubeletServingCA: "/d/tls/kubelet-serving-ca.crt",
		ClientAuth:       pki.ClientAuthArgs("/d/tls/client-ca.crt", "/d/tls/request-header-ca.crt"),
	}
}

// The arguments parse into the options upstream's command would build: k1s's listener, files
// and TLS policy, delegated auth through metrics-server's own kubeconfig, kubelets verified.
func TestOptionsFromArgs(t *testing.T) {
	cfg := testConfig("192.0.2.10", 10251)
	o, err := New(cfg).options()
	if err != nil {
		t.Fatal(err)
	}
	ss := o.SecureServing
	if !ss.BindAddress.Equal(cfg.NodeIP) || ss.BindPort != 10251 ||
		ss.ServerCert.CertKey.CertFile != cfg.Serving.Cert || ss.ServerCert.CertKey.KeyFile != cfg.Serving.Key ||
		!slices.Equal(ss.CipherSuites, pki.TLSCipherSuites) || ss.MinTLSVersion != pki.TLSMinVersion {
		t.Errorf("secure serving: %+v", ss.SecureServingOptions)
	}
	if o.Kubeconfig != cfg.Kubeconfig || o.Authentication.RemoteKubeConfigFile != cfg.Kubeconfig ||
		o.Authorization.RemoteKubeConfigFile != cfg.Kubeconfig {
		t.Errorf("kubeconfigs: %q, authn %q, authz %q", o.Kubeconfig, o.Authentication.RemoteKubeConfigFile, o.Authorization.RemoteKubeConfigFile)
	}
	// The apiserver's CA files, as its own flags name them: read before metrics-server serves.
	authn := o.Authentication
	if authn.ClientCert.ClientCA != "/d/tls/client-ca.crt" || authn.RequestHeader.ClientCAFile != "/d/tls/request-header-ca.crt" ||
		!slices.Equal(authn.RequestHeader.AllowedNames, []string{pki.AuthProxyUser}) ||
		!slices.Equal(authn.RequestHeader.UsernameHeaders, []string{"X-Remote-User"}) {
		t.Errorf("authentication: client CA %q, request header %+v", authn.ClientCert.ClientCA, authn.RequestHeader)
	}
	if o.MetricResolution != 15*time.Second {
		t.Errorf("metric resolution %s", o.MetricResolution)
	}

	// What ServerConfig builds the kubelet client from (the kubeconfig's rest.Config).
	kc := o.KubeletClient.Config(&rest.Config{Host: "https://127.0.0.1:6443", TLSClientConfig: rest.TLSClientConfig{CAFile: "/other-ca.crt"}})
	tls := kc.Client.TLSClientConfig
	if tls.Insecure || tls.CAFile != cfg.KubeletServingCA || tls.CertFile != cfg.KubeletClient.Cert || tls.KeyFile != cfg.KubeletClient.Key {
		t.Errorf("kubelet TLS: %+v", tls)
	}
	if kc.Scheme != "https" || !kc.UseNodeStatusPort ||
		!slices.Equal(kc.AddressTypePriority, []corev1.NodeAddressType{corev1.NodeInternalIP, corev1.NodeExternalIP, corev1.NodeHostName}) {
		t.Errorf("kubelet client: scheme %s, node status port %v, addresses %v", kc.Scheme, kc.UseNodeStatusPort, kc.AddressTypePriority)
	}
}

func TestValidateRejectsShortResolution(t *testing.T) {
	o, err := New(testConfig("192.0.2.10", 10251)).options()
	if err != nil {
		t.Fatal(err)
	}
	o.MetricResolution = 5 * time.Second
	if err := validate(o); err == nil || !strings.Contains(err.Error(), "metric-resolution") {
		t.Errorf("5s resolution: %v", err)
	}
	o.MetricResolution = MetricResolution
	o.KubeletClient.InsecureKubeletTLS = true // with a CA: upstream refuses both
	if err := validate(o); err == nil {
		t.Error("insecure kubelet TLS with a CA is valid")
	}
}

func TestEndpointSlice(t *testing.T) {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: ServiceName, Namespace: Namespace, UID: "svc-uid"}}
	for _, tc := range []struct {
		ip, addr string
		family   discoveryv1.AddressType
	}{
		{"192.0.2.10", "192.0.2.10", discoveryv1.AddressTypeIPv4},
		{"::ffff:192.0.2.10", "192.0.2.10", discoveryv1.AddressTypeIPv4},
		{"2001:db8::10", "2001:db8::10", discoveryv1.AddressTypeIPv6},
	} {
		es := endpointSlice(svc, net.ParseIP(tc.ip), 10251)
		if *es.Name != ServiceName || *es.Namespace != Namespace || *es.AddressType != tc.family {
			t.Errorf("%s: %s/%s, %s", tc.ip, *es.Namespace, *es.Name, *es.AddressType)
		}
		if es.Labels[discoveryv1.LabelServiceName] != ServiceName || es.Labels[discoveryv1.LabelManagedBy] == "endpointslice-controller.k8s.io" {
			t.Errorf("%s: labels %v", tc.ip, es.Labels)
		}
		if len(es.OwnerReferences) != 1 || *es.OwnerReferences[0].UID != "svc-uid" || *es.OwnerReferences[0].Kind != "Service" {
			t.Errorf("%s: owners %+v", tc.ip, es.OwnerReferences)
		}
		if len(es.Endpoints) != 1 || !slices.Equal(es.Endpoints[0].Addresses, []string{tc.addr}) || !*es.Endpoints[0].Conditions.Ready {
			t.Errorf("%s: endpoints %+v", tc.ip, es.Endpoints)
		}
		if len(es.Ports) != 1 || *es.Ports[0].Name != PortName || *es.Ports[0].Port != 10251 || *es.Ports[0].Protocol != corev1.ProtocolTCP {
			t.Errorf("%s: ports %+v", tc.ip, es.Ports)
		}
	}
}

// The manifest agrees with the controller: the APIService comes last (the controller waits
// for it), names the selectorless Service on a port named PortName, verifies TLS, and leaves
// its caBundle to the controller.
func TestManifest(t *testing.T) {
	out, err := deploy.Render(manifests.FS, deploy.Addon{Name: "metrics-server", Values: map[string]string{"METRICS_SERVER_USER": "k1s:metrics-server"}})
	if err != nil {
		t.Fatal(err)
	}
	objs, err := deploy.Objects(out)
	if err != nil {
		t.Fatal(err)
	}
	last := objs[len(objs)-1]
	if last.GetKind() != "APIService" || last.GetName() != APIServiceName {
		t.Fatalf("last object is %s %s", last.GetKind(), last.GetName())
	}
	if _, ok, _ := unstructured.NestedFieldNoCopy(last.Object, "spec", "caBundle"); ok {
		t.Error("the manifest sets the caBundle: the deployer would own it")
	}
	if skip, _, _ := unstructured.NestedBool(last.Object, "spec", "insecureSkipTLSVerify"); skip {
		t.Error("insecureSkipTLSVerify")
	}
	ref, _, _ := unstructured.NestedMap(last.Object, "spec", "service")
	var port int64
	for _, o := range objs {
		if o.GetKind() != "Service" {
			continue
		}
		if o.GetName() != ServiceName || o.GetNamespace() != Namespace {
			t.Errorf("Service %s/%s", o.GetNamespace(), o.GetName())
		}
		if _, ok, _ := unstructured.NestedFieldNoCopy(o.Object, "spec", "selector"); ok {
			t.Error("the Service has a selector")
		}
		ports, _, _ := unstructured.NestedSlice(o.Object, "spec", "ports")
		for _, p := range ports {
			if p := p.(map[string]any); p["name"] == PortName {
				port, _ = p["port"].(int64)
			}
		}
	}
	if ref["name"] != ServiceName || ref["namespace"] != Namespace || ref["port"] != port || port == 0 {
		t.Errorf("APIService service %v, Service port %q is %d", ref, PortName, port)
	}
	subjects := 0
	for _, o := range objs {
		s, _, _ := unstructured.NestedSlice(o.Object, "subjects")
		for _, s := range s {
			if s.(map[string]any)["name"] == "k1s:metrics-server" {
				subjects++
			}
		}
	}
	if subjects != 3 {
		t.Errorf("%d bindings for metrics-server's user, want 3 (its role, auth-delegator, auth reader)", subjects)
	}
}

// Every kind metrics-server serves has its OpenAPI model, and so has every model those
// depend on, under the names the apiserver looks them up by.
func TestOpenAPIModelNames(t *testing.T) {
	defs := openAPIDefinitions(func(name string) spec.Ref { return spec.MustCreateRef("#/definitions/" + name) })
	seen := map[string]bool{}
	var check func(name, from string)
	check = func(name, from string) {
		if seen[name] {
			return
		}
		seen[name] = true
		def, ok := defs[name]
		if !ok {
			t.Errorf("no model %s (for %s)", name, from)
		}
		for _, dep := range def.Dependencies {
			check(dep, name)
		}
	}
	for gvk := range api.Scheme.AllKnownTypes() {
		name, err := api.Scheme.ToOpenAPIDefinitionName(gvk)
		if err != nil {
			t.Fatal(err)
		}
		// The scheme also holds meta.k8s.io's kinds in every version; the API serves these.
		if gvk.Version == "v1beta1" && strings.HasPrefix(name, "io.k8s.metrics.") {
			check(name, gvk.Kind)
		}
	}
	if len(seen) < 4 {
		t.Errorf("checked only %v", seen)
	}
}
