package metrics

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/k1s-io/k1s/internal/layout"
	"github.com/k1s-io/k1s/internal/pki"
)

// fakeAPIServer answers what the controller and metrics-server ask: the add-on's objects,
// SubjectAccessReviews (the user "tester" may), and lists and watches of nodes (its node) and
// pods (none). It records the bodies of the applies. It has no extension-apiserver-authentication
// ConfigMap: metrics-server must take its CAs from k1s's files.
type fakeAPIServer struct {
	node string // the one Node, as JSON

	mu      sync.Mutex
	applied map[string]string
}

func (f *fakeAPIServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	kind, apiVersion := "", "v1"
	var items []string
	switch p := r.URL.Path; {
	case strings.HasPrefix(p, "/apis/apiregistration.k8s.io/v1/apiservices/"):
		kind, apiVersion = "APIService", "apiregistration.k8s.io/v1"
	case strings.HasPrefix(p, "/apis/discovery.k8s.io/v1/namespaces/kube-system/endpointslices/"):
		kind, apiVersion = "EndpointSlice", "discovery.k8s.io/v1"
	case p == "/api/v1/namespaces/kube-system/services/metrics-server":
		kind = "Service"
	case p == "/api/v1/nodes":
		kind, items = "Node", []string{f.node}
	case p == "/api/v1/pods":
		kind, apiVersion = "PartialObjectMetadata", "meta.k8s.io/v1"
	case p == "/apis/authorization.k8s.io/v1/subjectaccessreviews": // the aggregator's user may
		var sar struct {
			Spec struct{ User string } `json:"spec"`
		}
		_ = json.NewDecoder(r.Body).Decode(&sar)
		fmt.Fprintf(w, `{"kind":"SubjectAccessReview","apiVersion":"authorization.k8s.io/v1","status":{"allowed":%t}}`, sar.Spec.User == "tester")
		return
	default:
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}`)
		return
	}
	q := r.URL.Query()
	switch {
	case q.Get("watch") == "true" || q.Get("watch") == "1":
		if q.Get("sendInitialEvents") == "true" { // a watch-list: the items, then the end of them
			for _, item := range items {
				fmt.Fprintf(w, `{"type":"ADDED","object":%s}`+"\n", item)
			}
			fmt.Fprintf(w, `{"type":"BOOKMARK","object":{"kind":%q,"apiVersion":%q,"metadata":{"resourceVersion":"1","annotations":{"k8s.io/initial-events-end":"true"}}}}`+"\n", kind, apiVersion)
		}
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	case r.Method == http.MethodPatch:
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.applied[kind+" "+path.Base(r.URL.Path)] = string(body)
		f.mu.Unlock()
		fmt.Fprintf(w, `{"kind":%q,"apiVersion":%q,"metadata":{"name":%q,"resourceVersion":"2"}}`, kind, apiVersion, path.Base(r.URL.Path))
	case r.URL.Path == "/api/v1/nodes" || r.URL.Path == "/api/v1/pods":
		fmt.Fprintf(w, `{"kind":"%sList","apiVersion":%q,"metadata":{"resourceVersion":"1"},"items":[%s]}`, kind, apiVersion, strings.Join(items, ","))
	default:
		fmt.Fprintf(w, `{"kind":%q,"apiVersion":%q,"metadata":{"name":%q,"namespace":"kube-system","uid":"u1","resourceVersion":"1"}}`, kind, apiVersion, path.Base(r.URL.Path))
	}
}

func (f *fakeAPIServer) get(kind string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied[kind]
}

const kubeletMetrics = `# TYPE node_cpu_usage_seconds_total counter
node_cpu_usage_seconds_total 357.35491 1633253809720
# TYPE node_memory_working_set_bytes gauge
node_memory_working_set_bytes 1.616273408e+09 1633253809720
`

// fakeKubelet serves /metrics/resource with a serving certificate of the server CA, only to
// clients with a certificate of the client CA, and reports who scraped it.
func fakeKubelet(t *testing.T, serving pki.Pair, clientCA *x509.Certificate) (port int, scrapedBy <-chan string) {
	cert, err := tls.LoadX509KeyPair(serving.CertFile, serving.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	by := make(chan string, 100)
	kubelet := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics/resource" {
			http.NotFound(w, r)
			return
		}
		select {
		case by <- r.TLS.PeerCertificates[0].Subject.CommonName:
		default:
		}
		fmt.Fprint(w, kubeletMetrics)
	}))
	pool := x509.NewCertPool()
	pool.AddCert(clientCA)
	kubelet.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
	kubelet.StartTLS()
	t.Cleanup(kubelet.Close)
	return kubelet.Listener.Addr().(*net.TCPAddr).Port, by
}

func writeKubeconfig(t *testing.T, path, server string) {
	t.Helper()
	kubeconfig := fmt.Sprintf("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: %q}}]\nusers: [{name: u, user: {}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n", server)
	if err := os.WriteFile(path, []byte(kubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Run serves the metrics API (and its OpenAPI), scrapes kubelets with its client certificate
// while verifying theirs against the server CA, points the endpoints and caBundle at itself,
// and on stop returns only once its port is free again, so that it can lead again at once.
func TestRunServesScrapesAndReleasesPort(t *testing.T) {
	// The certificates as k1s issues them.
	dir := t.TempDir()
	files := func(name string) layout.Pair {
		return layout.Pair{Cert: filepath.Join(dir, name+".crt"), Key: filepath.Join(dir, name+".key")}
	}
	serverCA, err := pki.EnsureCA(files("server-ca"), "server-ca", "test-server-ca")
	if err != nil {
		t.Fatal(err)
	}
	clientCA, err := pki.EnsureCA(files("client-ca"), "client-ca", "test-client-ca")
	if err != nil {
		t.Fatal(err)
	}
	issue := func(ca *pki.CA, name string, spec pki.CertSpec) pki.Pair {
		pair, _, err := ca.Ensure(files(name), spec, false)
		if err != nil {
			t.Fatal(err)
		}
		return pair
	}
	issue(serverCA, "serving-metrics-server", pki.CertSpec{CommonName: "metrics-server", DNSNames: []string{ServingName}, Server: true})
	issue(clientCA, "client-metrics-server", pki.CertSpec{CommonName: "k1s:metrics-server", Client: true})
	requestHeaderCA, err := pki.EnsureCA(files("request-header-ca"), "request-header-ca", "test-request-header-ca")
	if err != nil {
		t.Fatal(err)
	}
	authProxy := issue(requestHeaderCA, "client-auth-proxy", pki.CertSpec{CommonName: pki.AuthProxyUser, Client: true})
	kubeletServing := issue(serverCA, "kubelet", pki.CertSpec{CommonName: "system:node:n1", IPs: []net.IP{net.ParseIP("127.0.0.1")}, Server: true})

	kubeletPort, scrapedBy := fakeKubelet(t, kubeletServing, clientCA.Cert)
	fake := &fakeAPIServer{applied: map[string]string{},
		// Hostname first: metrics-server must prefer the InternalIP (n1 resolves nowhere).
		node: fmt.Sprintf(`{"kind":"Node","apiVersion":"v1","metadata":{"name":"n1","resourceVersion":"1"},"status":{"addresses":[{"type":"Hostname","address":"n1"},{"type":"InternalIP","address":"127.0.0.1"}],"daemonEndpoints":{"kubeletEndpoint":{"Port":%d}}}}`, kubeletPort)}
	api := httptest.NewServer(fake)
	defer api.Close()
	defer api.CloseClientConnections()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	writeKubeconfig(t, kubeconfig, api.URL)

	log := logrus.New()
	log.SetOutput(testWriter{t})
	port := freePort(t)
	c := New(Config{NodeIP: net.ParseIP("127.0.0.1"), Port: port, Kubeconfig: kubeconfig,
		Serving: files("serving-metrics-server"), KubeletClient: files("client-metrics-server"), ServerCA: serverCA.CertFile,
		// The fake kubelet's certificate comes from the same CA here.
		KubeletServingCA: serverCA.CertFile,
		ClientAuth:       pki.ClientAuthArgs(clientCA.CertFile, requestHeaderCA.CertFile),
		Client:           func() (kubernetes.Interface, error) { return kubernetes.NewForConfig(&rest.Config{Host: api.URL}) }, Log: log})
	addr := net.JoinHostPort("127.0.0.1", fmt.Sprint(port))
	// The aggregator's view: the server CA and the Service's name; the auth-proxy client
	// certificate, with the user in headers.
	roots := x509.NewCertPool()
	roots.AddCert(serverCA.Cert)
	proxyCert, err := tls.LoadX509KeyPair(authProxy.CertFile, authProxy.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	aggregator := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: roots, ServerName: ServingName, Certificates: []tls.Certificate{proxyCert}}}}
	get := func(path string) (int, string, error) {
		req, _ := http.NewRequest(http.MethodGet, "https://"+addr+path, nil)
		req.Header.Set("X-Remote-User", "tester")
		resp, err := aggregator.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), err
	}

	for round := range 2 { // the lease comes back: the port must be free again
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		deadline := time.Now().Add(30 * time.Second)
		for {
			_, _, err := get("/livez")
			if err == nil {
				break
			}
			select {
			case err := <-done:
				t.Fatalf("round %d: Run returned: %v", round, err)
			default:
			}
			if time.Now().After(deadline) {
				cancel()
				t.Fatalf("round %d: metrics-server does not serve: %v", round, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		// The API and its OpenAPI (which the aggregator merges) are served to the aggregator
		// from the first request on: the request-header CA was read before serving.
		for path, want := range map[string]string{
			"/apis/metrics.k8s.io/v1beta1":            `"kind":"APIResourceList"`,
			"/apis/metrics.k8s.io/v1beta1/nodes":      `"kind":"NodeMetricsList"`,
			"/apis/metrics.k8s.io/v1beta1/pods":       `"kind":"PodMetricsList"`,
			"/openapi/v2":                             "io.k8s.metrics.pkg.apis.metrics.v1beta1.PodMetrics",
			"/openapi/v3/apis/metrics.k8s.io/v1beta1": "io.k8s.metrics.pkg.apis.metrics.v1beta1.NodeMetrics",
		} {
			code, body, err := get(path)
			if err != nil || code != http.StatusOK || !strings.Contains(body, want) {
				t.Errorf("round %d: %s: %d %v, without %s: %.300s", round, path, code, err, want, body)
			}
		}
		// The kubelet was scraped over verified TLS, and its metrics decoded.
		select {
		case cn := <-scrapedBy:
			if cn != "k1s:metrics-server" {
				t.Errorf("round %d: kubelet scraped by %q", round, cn)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("round %d: the kubelet was not scraped", round)
		}
		for {
			_, body, _ := get("/metrics")
			if strings.Contains(body, `metrics_server_kubelet_request_total{success="false"}`) {
				t.Errorf("round %d: a scrape failed", round)
			}
			if strings.Contains(body, `metrics_server_kubelet_request_total{success="true"}`) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: no successful scrape", round)
			}
			time.Sleep(50 * time.Millisecond)
		}

		for fake.get("APIService "+APIServiceName) == "" && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if slice := fake.get("EndpointSlice " + ServiceName); !strings.Contains(slice, `"127.0.0.1"`) || !strings.Contains(slice, `"uid":"u1"`) || !strings.Contains(slice, fmt.Sprintf(`"port":%d`, port)) {
			t.Errorf("round %d: EndpointSlice applied: %s", round, slice)
		}
		ca, _ := os.ReadFile(serverCA.CertFile)
		if apisvc := fake.get("APIService " + APIServiceName); !strings.Contains(apisvc, base64.StdEncoding.EncodeToString(ca)) {
			t.Errorf("round %d: APIService applied without the server CA: %s", round, apisvc)
		}

		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("round %d: Run did not return after its context ended", round)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("round %d: port still held after Run returned: %v", round, err)
		}
		ln.Close()
	}
}

// A start that fails after listening frees the port too.
func TestFailedStartReleasesPort(t *testing.T) {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if strings.HasPrefix(r.URL.Path, "/apis/apiregistration.k8s.io/") {
			fmt.Fprint(w, `{"kind":"APIService","apiVersion":"apiregistration.k8s.io/v1","metadata":{"name":"v1beta1.metrics.k8s.io"}}`)
			return
		}
		w.WriteHeader(http.StatusForbidden) // the RBAC is not there yet
		fmt.Fprint(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403}`)
	}))
	defer api.Close()
	cfg := testConfig("127.0.0.1", freePort(t))
	cfg.Kubeconfig = filepath.Join(t.TempDir(), "kubeconfig")
	writeKubeconfig(t, cfg.Kubeconfig, api.URL)
	cfg.Client = func() (kubernetes.Interface, error) { return kubernetes.NewForConfig(&rest.Config{Host: api.URL}) }
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := New(cfg).Run(ctx); err == nil {
		t.Fatal("Run started without its authentication configuration")
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", fmt.Sprint(cfg.Port)))
	if err != nil {
		t.Fatalf("port still held after a failed start: %v", err)
	}
	ln.Close()
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
