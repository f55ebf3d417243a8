//go:build e2e

package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// testRegistry is a real registry (go-containerregistry's) on 127.0.0.1, behind TLS and basic
// auth, in the test process.
type testRegistry struct {
	host   string
	caFile string
	user   string
	pass   string
	pool   *x509.CertPool
	// refused counts the requests refused for their credentials.
	refused atomic.Int32
}

func startTestRegistry(t testing.TB, dir, user, pass string) *testRegistry {
	t.Helper()
	r := &testRegistry{user: user, pass: pass}
	handler := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if u, p, ok := req.BasicAuth(); !ok || u != user || p != pass {
			r.refused.Add(1)
			w.Header().Set("WWW-Authenticate", `Basic realm="k1s-e2e"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
			return
		}
		handler.ServeHTTP(w, req)
	}))
	srv.StartTLS()
	t.Cleanup(srv.Close)
	r.host = strings.TrimPrefix(srv.URL, "https://")
	r.caFile = filepath.Join(dir, "registry-"+strings.ReplaceAll(r.host, ":", "-")+".crt")
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(r.caFile, cert, 0o600); err != nil {
		t.Fatal(err)
	}
	r.pool = x509.NewCertPool()
	r.pool.AddCert(srv.Certificate())
	return r
}

// push uploads the image tarball at path as repo (name:tag) with the right credentials, as an
// image of its own: with a label, so that its ID differs from the imported image's. (A kubelet
// that pulled an image ID under one name runs it under another only after checking the pod may
// pull that name too, and imagePullPolicy Never cannot: KEP-2535.)
func (r *testRegistry) push(t testing.TB, path, repo string) {
	t.Helper()
	base, err := tarball.ImageFromPath(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := base.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	config := *cf.Config.DeepCopy()
	config.Labels = map[string]string{"k1s-e2e": repo}
	img, err := mutate.Config(base, config)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(r.host + "/" + repo)
	if err != nil {
		t.Fatal(err)
	}
	transport := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: r.pool}}
	if err := remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: r.user, Password: r.pass}), remote.WithTransport(transport)); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
}

// registriesYAML is a registries.yaml whose docker.io mirror is good (right credentials, a
// rewrite of library/) and whose quay.io mirror has the wrong password.
func registriesYAML(good, bad *testRegistry) string {
	return fmt.Sprintf(`mirrors:
  docker.io:
    endpoint: ["https://%[1]s"]
    rewrite:
      "^library/(.*)": "k1s-e2e/$1"
  quay.io:
    endpoint: ["https://%[3]s"]
    rewrite:
      "^(.*)": "k1s-e2e/$1"
configs:
  "%[1]s":
    auth: {username: %[5]s, password: %[6]s}
    tls: {ca_file: %[2]s}
  "%[3]s":
    auth: {username: %[5]s, password: not-%[6]s}
    tls: {ca_file: %[4]s}
`, good.host, good.caFile, bad.host, bad.caFile, good.user, good.pass)
}

// mirroredPodManifest is a pod %[1]s of image %[2]s, pulled if not present.
const mirroredPodManifest = `apiVersion: v1
kind: Pod
metadata: {name: %[1]s}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: main, image: %[2]s, imagePullPolicy: IfNotPresent, command: [sleep, "3600"]}
`

// checkRegistries pulls docker.io/library/mirrored:1 through the good mirror, whose registry
// has it as k1s-e2e/mirrored:1, and expects quay.io's mirror to refuse its wrong credentials.
func checkRegistries(t *testing.T, c *cluster, good, bad *testRegistry) {
	s := c.server()
	for _, r := range []*testRegistry{good, bad} {
		r.push(t, c.testImage(), "k1s-e2e/mirrored:1")
	}
	t.Run("registries.yaml: a pull through a mirror with a rewrite", func(t *testing.T) {
		s.mustKubectl("apply", "-f", writeTemp(t, "mirrored.yaml", fmt.Sprintf(mirroredPodManifest, "mirrored", "docker.io/library/mirrored:1")))
		eventually(t, 2*time.Minute, "pod mirrored running", func() error {
			out, err := s.kubectl("get", "pod", "mirrored", "-o", "jsonpath={.status.phase} {.status.containerStatuses[0].imageID}")
			if err != nil || !strings.HasPrefix(out, "Running ") {
				events, _ := s.kubectl("get", "events", "--field-selector", "involvedObject.name=mirrored", "-o", "jsonpath={.items[*].message}")
				return fmt.Errorf("%v %q; events: %s", err, out, events)
			}
			return nil
		})
		s.mustKubectl("delete", "pod", "mirrored", "--wait=false")
	})
	t.Run("registries.yaml: wrong credentials", func(t *testing.T) {
		s.mustKubectl("apply", "-f", writeTemp(t, "refused.yaml", fmt.Sprintf(mirroredPodManifest, "refused", "quay.io/mirrored:1")))
		eventually(t, 2*time.Minute, "an ErrImagePull Event saying unauthorized", func() error {
			out, err := s.kubectl("get", "events", "--field-selector", "involvedObject.name=refused,reason=Failed", "-o", "jsonpath={.items[*].message}")
			if err != nil || !strings.Contains(strings.ToLower(out), "unauthorized") {
				return fmt.Errorf("%v: %q", err, out)
			}
			return nil
		})
		if bad.refused.Load() == 0 {
			t.Error("the mirror with the wrong password was never asked")
		}
		s.mustKubectl("delete", "pod", "refused", "--wait=false")
	})
}
