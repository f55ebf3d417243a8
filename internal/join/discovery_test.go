package join

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	tokenjws "k8s.io/cluster-bootstrap/token/jws"
)

const clusterInfoPath = "/api/v1/namespaces/kube-public/configmaps/cluster-info"

// fakeServer is an apiserver that serves only kube-public/cluster-info, over TLS with a
// self-signed certificate that is also its CA.
type fakeServer struct {
	*httptest.Server
	caPEM    []byte
	requests atomic.Int32

	mu     sync.Mutex
	data   map[string]string
	status int // non-zero: answer with this error status
}

func newFakeServer(t *testing.T) *fakeServer {
	t.Helper()
	f := &fakeServer{}
	f.Server = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	// The handshakes a test's client rejects on purpose are not worth a log line.
	f.Config.ErrorLog = log.New(io.Discard, "", 0)
	f.StartTLS()
	t.Cleanup(f.Close)
	f.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.Certificate().Raw})
	return f
}

func (f *fakeServer) serve(w http.ResponseWriter, r *http.Request) {
	f.requests.Add(1)
	f.mu.Lock()
	data, status := f.data, f.status
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if r.URL.Path != clusterInfoPath {
		status = http.StatusNotFound
	}
	if status != 0 {
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(metav1.Status{
			TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
			Status:   metav1.StatusFailure, Code: int32(status), Reason: metav1.StatusReason(http.StatusText(status)),
			Message: "fake server says no",
		})
		return
	}
	json.NewEncoder(w).Encode(corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{Kind: "ConfigMap", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Name: bootstrapapi.ConfigMapClusterInfo, Namespace: metav1.NamespacePublic},
		Data:       data,
	})
}

func (f *fakeServer) set(data map[string]string, status int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.data, f.status = data, status
}

// publish serves a cluster-info naming the server with CA caPEM, signed for each token.
func (f *fakeServer) publish(t *testing.T, caPEM []byte, signers ...Token) {
	t.Helper()
	f.set(signed(t, clusterInfoKubeconfig(t, f.URL, caPEM), signers...), 0)
}

func clusterInfoKubeconfig(t *testing.T, server string, caPEM []byte) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters[""] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	kubeconfig, err := clientcmd.Write(*kc)
	if err != nil {
		t.Fatal(err)
	}
	return string(kubeconfig)
}

// signed is cluster-info's data: kubeconfig, signed as the bootstrap signer does for each token.
func signed(t *testing.T, kubeconfig string, signers ...Token) map[string]string {
	t.Helper()
	data := map[string]string{bootstrapapi.KubeConfigKey: kubeconfig}
	for _, s := range signers {
		sig, err := tokenjws.ComputeDetachedSignature(kubeconfig, s.ID, s.Secret)
		if err != nil {
			t.Fatal(err)
		}
		data[bootstrapapi.JWSSignatureKeyPrefix+s.ID] = sig
	}
	return data
}

func quietLog() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

func discoverWithin(t *testing.T, d time.Duration, server string, token Token, skipCA bool) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return Discover(ctx, quietLog(), server, token, skipCA)
}

func wantError(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one saying %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
}

func serverToken(f *fakeServer) Token {
	return Token{CAHash: CAHash(f.Certificate()), ID: "abcdef", Secret: "0123456789abcdef"}
}

func TestDiscoverAuthenticatesTheServer(t *testing.T) {
	f := newFakeServer(t)
	token := serverToken(f)
	f.publish(t, f.caPEM, Token{ID: "zzzzzz", Secret: "zzzzzzzzzzzzzzzz"}, token)
	ca, err := discoverWithin(t, 10*time.Second, f.URL, token, false)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ca, f.caPEM) {
		t.Fatalf("Discover returned CA %q, want the server's %q", ca, f.caPEM)
	}
}

// A cluster-info whose bundle carries another CA beside the pinned one: the node trusts the
// pinned CA alone.
func TestDiscoverTrustsOnlyThePinnedCA(t *testing.T) {
	f := newFakeServer(t)
	other := newFakeServer(t)
	token := serverToken(f)
	f.publish(t, append(append([]byte{}, other.caPEM...), f.caPEM...), token)
	ca, err := discoverWithin(t, 10*time.Second, f.URL, token, false)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ca, f.caPEM) {
		t.Fatalf("Discover returned CA bundle %q, want only the pinned CA %q", ca, f.caPEM)
	}
}

func TestDiscoverWithBareTokenNeedsSkipCA(t *testing.T) {
	f := newFakeServer(t)
	token := serverToken(f)
	f.publish(t, f.caPEM, token)
	token.CAHash = ""
	_, err := discoverWithin(t, 10*time.Second, f.URL, token, false)
	wantError(t, err, "the join token has no CA hash (a bare <id>.<secret>)", "--insecure-skip-ca-verification")
	if n := f.requests.Load(); n != 0 {
		t.Errorf("a bare token without --insecure-skip-ca-verification sent %d requests", n)
	}
	ca, err := discoverWithin(t, 10*time.Second, f.URL, token, true)
	if err != nil || !bytes.Equal(ca, f.caPEM) {
		t.Fatalf("with --insecure-skip-ca-verification: %q, %v", ca, err)
	}
}

func TestDiscoverRejectsUnknownTokenID(t *testing.T) {
	oldWait, oldRunning := signatureWait, runningSignerWait
	signatureWait, runningSignerWait = time.Minute, 300*time.Millisecond
	t.Cleanup(func() { signatureWait, runningSignerWait = oldWait, oldRunning })
	f := newFakeServer(t)
	// The signer runs (it signed another token): a short wait, not signatureWait.
	f.publish(t, f.caPEM, Token{ID: "zzzzzz", Secret: "zzzzzzzzzzzzzzzz"})
	start := time.Now()
	_, err := discoverWithin(t, 10*time.Second, f.URL, serverToken(f), false)
	wantError(t, err, `the join token is not valid for this cluster: token id "abcdef" is unknown, expired or deleted`, "k1s token create")
	if took := time.Since(start); took < runningSignerWait {
		t.Errorf("gave up after %s, before the bootstrap signer had %s to sign", took, runningSignerWait)
	}
}

func TestDiscoverWaitsLongerWhileNothingIsSigned(t *testing.T) {
	oldWait, oldRunning := signatureWait, runningSignerWait
	signatureWait, runningSignerWait = 600*time.Millisecond, 10*time.Millisecond
	t.Cleanup(func() { signatureWait, runningSignerWait = oldWait, oldRunning })
	f := newFakeServer(t)
	f.publish(t, f.caPEM)
	start := time.Now()
	_, err := discoverWithin(t, 10*time.Second, f.URL, serverToken(f), false)
	wantError(t, err, `token id "abcdef" is unknown, expired or deleted`)
	if took := time.Since(start); took < signatureWait {
		t.Errorf("gave up after %s: with no signature yet the controller-manager may still be starting (wait %s)", took, signatureWait)
	}
}

func TestDiscoverWaitsForTheSignature(t *testing.T) {
	f := newFakeServer(t)
	token := serverToken(f)
	f.publish(t, f.caPEM)
	later := signed(t, clusterInfoKubeconfig(t, f.URL, f.caPEM), token)
	go func() {
		time.Sleep(300 * time.Millisecond)
		f.set(later, 0)
	}()
	if _, err := discoverWithin(t, 10*time.Second, f.URL, token, false); err != nil {
		t.Fatal(err)
	}
}

func TestDiscoverRejectsWrongSecret(t *testing.T) {
	f := newFakeServer(t)
	token := serverToken(f)
	f.publish(t, f.caPEM, Token{ID: token.ID, Secret: "zzzzzzzzzzzzzzzz"})
	_, err := discoverWithin(t, 10*time.Second, f.URL, token, false)
	wantError(t, err, `the join token is not valid for this cluster: its secret does not match token id "abcdef"`)
	if strings.Contains(err.Error(), token.Secret) {
		t.Errorf("the error quotes the secret: %v", err)
	}
}

func TestDiscoverRejectsCAHashMismatch(t *testing.T) {
	f := newFakeServer(t)
	token := serverToken(f)
	f.publish(t, f.caPEM, token)
	token.CAHash = CAHash(testCA(t))
	_, err := discoverWithin(t, 10*time.Second, f.URL, token, false)
	wantError(t, err, "the server's CA (hash "+CAHash(f.Certificate())+") does not match the join token's CA hash "+token.CAHash,
		"the token is for another cluster")
}

func TestDiscoverRejectsServerOutsideTheCA(t *testing.T) {
	f := newFakeServer(t)
	// cluster-info names a CA with the token's hash, but the server's certificate is not of it.
	other := testCA(t)
	token := Token{CAHash: CAHash(other), ID: "abcdef", Secret: "0123456789abcdef"}
	f.publish(t, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: other.Raw}), token)
	_, err := discoverWithin(t, 10*time.Second, f.URL, token, false)
	wantError(t, err, "the server at "+f.URL+" does not present a certificate of the cluster CA for that address", "--tls-san")
}

func TestDiscoverRejectsAServerThatHidesClusterInfo(t *testing.T) {
	for _, status := range []int{http.StatusForbidden, http.StatusUnauthorized} {
		f := newFakeServer(t)
		f.set(nil, status)
		_, err := discoverWithin(t, 10*time.Second, f.URL, serverToken(f), false)
		wantError(t, err, "the server at "+f.URL+" does not publish cluster-info to joining nodes", "is it a k1s server?")
	}
}

func TestDiscoverRejectsMalformedClusterInfo(t *testing.T) {
	f := newFakeServer(t)
	token := serverToken(f)
	f.set(signed(t, "{not a kubeconfig", token), 0)
	_, err := discoverWithin(t, 10*time.Second, f.URL, token, false)
	wantError(t, err, "the server's cluster-info holds a malformed kubeconfig")

	f.set(signed(t, clusterInfoKubeconfig(t, f.URL, nil), token), 0)
	_, err = discoverWithin(t, 10*time.Second, f.URL, token, false)
	wantError(t, err, "the server's cluster-info holds no CA certificate")
}

func TestDiscoverRetriesUntilTheContextEnds(t *testing.T) {
	f := newFakeServer(t)
	f.set(nil, http.StatusServiceUnavailable)
	_, err := discoverWithin(t, 500*time.Millisecond, f.URL, serverToken(f), false)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Discover = %v, want the context's end", err)
	}
	if f.requests.Load() == 0 {
		t.Fatal("Discover did not try the server")
	}
}

func TestValidateServerURL(t *testing.T) {
	for _, ok := range []string{"https://10.0.0.1:6443", "https://server.example", "https://[fd00::1]:6443"} {
		if err := ValidateServerURL(ok); err != nil {
			t.Errorf("ValidateServerURL(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "10.0.0.1:6443", "http://10.0.0.1:6443", "https://", "https://%zz"} {
		err := ValidateServerURL(bad)
		if err == nil {
			t.Errorf("ValidateServerURL(%q) accepted it", bad)
			continue
		}
		if !strings.Contains(err.Error(), "must be an https:// URL (like https://HOST:6443)") {
			t.Errorf("ValidateServerURL(%q) = %v, without the fix", bad, err)
		}
	}
}

func TestWriteBootstrapKubeconfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent", "bootstrap.kubeconfig")
	token := Token{CAHash: strings.Repeat("a", 64), ID: "abcdef", Secret: "0123456789abcdef"}
	caPEM := []byte("-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n")
	if err := WriteBootstrapKubeconfig(path, "https://10.0.0.1:6443", caPEM, token); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the bootstrap kubeconfig holds a secret: want mode 0600, have %v (%v)", fi.Mode(), err)
	}
	kc, err := clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := kc.Contexts[kc.CurrentContext]
	if ctx == nil {
		t.Fatalf("no current context in %+v", kc)
	}
	cluster, user := kc.Clusters[ctx.Cluster], kc.AuthInfos[ctx.AuthInfo]
	if cluster.Server != "https://10.0.0.1:6443" || !bytes.Equal(cluster.CertificateAuthorityData, caPEM) {
		t.Errorf("cluster %+v", cluster)
	}
	// The apiserver authenticates the bootstrap token, not the full K10 form.
	if user.Token != "abcdef.0123456789abcdef" {
		t.Errorf("token %q, want the bootstrap token", user.Token)
	}
}
