package registries

import (
	"context"
	"crypto/sha256"
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

	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/core/remotes/docker/config"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"
)

const (
	user, password, token = "user", "secret", "static-token"
	// mirrored is the registry the tests pull for: nothing listens there, so that containerd's
	// fallback to the registry itself fails at once, without the network.
	mirrored = "127.0.0.1:1"
	accept   = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
)

// upstream is a TLS registry that wants user:secret (basic) or the static bearer token, with
// a random image at mirror/busybox:1. It serves its API at /v2 and at /prefix/v2.
type upstream struct {
	host, caFile string
	img          v1.Image
	prefixPinged atomic.Bool
}

func newUpstream(t *testing.T) *upstream {
	t.Helper()
	up := &upstream{}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/prefix/v2/" {
			up.prefixPinged.Store(true)
		}
		r.URL.Path = strings.TrimPrefix(r.URL.Path, "/prefix")
		u, p, ok := r.BasicAuth()
		if (!ok || u != user || p != password) && r.Header.Get("Authorization") != "Bearer "+token {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	up.host, up.caFile = strings.TrimPrefix(srv.URL, "https://"), filepath.Join(t.TempDir(), "ca.pem")
	writeFile(t, up.caFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})))
	var err error
	if up.img, err = random.Image(1024, 2); err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(up.host + "/mirror/busybox:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, up.img, remote.WithAuth(&authn.Basic{Username: user, Password: password}), remote.WithTransport(srv.Client().Transport)); err != nil {
		t.Fatal(err)
	}
	return up
}

// registries is a registries.yaml mirroring mirrored to the upstream, with auth.
func (up *upstream) registries(t *testing.T, auth string) *Registry {
	return mustParse(t, fmt.Sprintf(`
mirrors:
  %q:
    endpoint: ["https://%s"]
    rewrite:
      "^library/(.*)": "mirror/$1"
configs:
  %q:
    auth: %s
    tls: {ca_file: %s}
`, mirrored, up.host, up.host, auth, up.caFile))
}

func startProxy(t *testing.T, r *Registry) *Proxy {
	t.Helper()
	log := logrus.New()
	log.SetOutput(io.Discard)
	p, err := NewProxy(r, 0, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return p
}

func request(t *testing.T, method, url string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", accept)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func TestProxy(t *testing.T) {
	up := newUpstream(t)
	p := startProxy(t, up.registries(t, fmt.Sprintf("{username: %s, password: %s}", user, password)))
	base := p.URL() + "/" + mirrored + "/0/v2/"
	if !strings.HasPrefix(base, "http://127.0.0.1:") {
		t.Errorf("proxy at %s, not on 127.0.0.1", base)
	}
	manifest, err := up.img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	imgDigest, err := up.img.Digest()
	if err != nil {
		t.Fatal(err)
	}

	resp, body := request(t, http.MethodGet, base+"library/busybox/manifests/1?ns="+mirrored)
	if resp.StatusCode != http.StatusOK || string(body) != string(manifest) || resp.Header.Get("Docker-Content-Digest") != imgDigest.String() {
		t.Errorf("rewritten manifest: %s %s %q", resp.Status, resp.Header.Get("Docker-Content-Digest"), body)
	}
	resp, _ = request(t, http.MethodHead, base+"library/busybox/manifests/1")
	if resp.StatusCode != http.StatusOK || resp.ContentLength != int64(len(manifest)) {
		t.Errorf("HEAD manifest: %s, length %d", resp.Status, resp.ContentLength)
	}
	layers, err := up.img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	layer, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	resp, body = request(t, http.MethodGet, base+"library/busybox/blobs/"+layer.String())
	if sum := fmt.Sprintf("sha256:%x", sha256.Sum256(body)); resp.StatusCode != http.StatusOK || sum != layer.String() {
		t.Errorf("blob: %s, digest %s, want %s", resp.Status, sum, layer)
	}
	// No rule matches: the repository goes as it is.
	if resp, _ := request(t, http.MethodGet, base+"mirror/busybox/manifests/1"); resp.StatusCode != http.StatusOK {
		t.Errorf("unrewritten manifest: %s", resp.Status)
	}
	// The upstream's own answers come back.
	if resp, body := request(t, http.MethodGet, base+"library/nothing/manifests/1"); resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "UNKNOWN") {
		t.Errorf("missing manifest: %s %s", resp.Status, body)
	}
	if resp, _ := request(t, http.MethodPost, base+"library/busybox/blobs/uploads/"); resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: %s, Allow %q", resp.Status, resp.Header.Get("Allow"))
	}
	if resp, _ := request(t, http.MethodGet, p.URL()+"/other/0/v2/library/busybox/manifests/1"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown route: %s", resp.Status)
	}
}

func TestProxyWrongPassword(t *testing.T) {
	up := newUpstream(t)
	p := startProxy(t, up.registries(t, "{username: user, password: wrong}"))
	resp, body := request(t, http.MethodGet, p.URL()+"/"+mirrored+"/0/v2/library/busybox/manifests/1")
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != "" || !strings.Contains(string(body), `"UNAUTHORIZED"`) {
		t.Errorf("wrong password: %s, challenge %q, body %s", resp.Status, resp.Header.Get("WWW-Authenticate"), body)
	}
}

func TestProxyToken(t *testing.T) {
	up := newUpstream(t)
	// No rewrite: the token alone sends the endpoint through the proxy.
	p := startProxy(t, mustParse(t, fmt.Sprintf(`
mirrors:
  %q:
    endpoint: ["https://%s"]
configs:
  %q:
    auth: {token: %s}
    tls: {ca_file: %s}
`, mirrored, up.host, up.host, token, up.caFile)))
	if resp, body := request(t, http.MethodGet, p.URL()+"/"+mirrored+"/0/v2/mirror/busybox/manifests/1"); resp.StatusCode != http.StatusOK {
		t.Errorf("with a bearer token: %s %s", resp.Status, body)
	}
}

// TestProxyOwnAPIRoot checks an endpoint whose path is its API root (override_path): the
// proxy's authentication handshake must go there too.
func TestProxyOwnAPIRoot(t *testing.T) {
	up := newUpstream(t)
	p := startProxy(t, mustParse(t, fmt.Sprintf(`
mirrors:
  %q:
    endpoint: ["https://%s/prefix/v2"]
    rewrite: {"^library/(.*)": "mirror/$1"}
configs:
  %q:
    auth: {username: %s, password: %s}
    tls: {ca_file: %s}
`, mirrored, up.host, up.host, user, password, up.caFile)))
	if resp, body := request(t, http.MethodGet, p.URL()+"/"+mirrored+"/0/v2/library/busybox/manifests/1"); resp.StatusCode != http.StatusOK {
		t.Errorf("endpoint with a path: %s %s", resp.Status, body)
	}
	if !up.prefixPinged.Load() {
		t.Error("the proxy did not ping the endpoint's API root /prefix/v2/")
	}
}

// TestContainerdPull pulls as containerd 2.4 does: its resolver, configured from the hosts
// directory WriteHostsDir writes, through the proxy.
func TestContainerdPull(t *testing.T) {
	up := newUpstream(t)
	resolver := func(r *Registry) remotes.Resolver {
		p := startProxy(t, r)
		dir := filepath.Join(t.TempDir(), "certs.d")
		if err := r.WriteHostsDir(dir, p.URL()); err != nil {
			t.Fatal(err)
		}
		return docker.NewResolver(docker.ResolverOptions{
			Hosts: config.ConfigureHosts(context.Background(), config.HostOptions{HostDir: config.HostDirFromRoot(dir)}),
		})
	}
	ctx := context.Background()
	ref := mirrored + "/library/busybox:1"

	res := resolver(up.registries(t, fmt.Sprintf("{username: %s, password: %s}", user, password)))
	_, desc, err := res.Resolve(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	imgDigest, err := up.img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest.String() != imgDigest.String() {
		t.Errorf("resolved %s, want %s", desc.Digest, imgDigest)
	}
	fetcher, err := res.Fetcher(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	m, err := up.img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	l := m.Layers[0]
	for _, d := range []ocispec.Descriptor{desc, {MediaType: string(l.MediaType), Digest: digest.Digest(l.Digest.String()), Size: l.Size}} {
		rc, err := fetcher.Fetch(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || digest.FromBytes(data) != d.Digest {
			t.Errorf("fetching %s: %v, got %s", d.Digest, err, digest.FromBytes(data))
		}
	}

	res = resolver(up.registries(t, "{username: user, password: wrong}"))
	_, _, err = res.Resolve(ctx, ref)
	if err == nil || !strings.Contains(err.Error(), "401 Unauthorized") {
		t.Errorf("wrong password: %v, want a 401 Unauthorized", err)
	}
	t.Logf("containerd's error with a wrong password: %v", err)
}

func TestMain(m *testing.M) {
	// containerd's resolver logs every host it tries at info level.
	logrus.SetLevel(logrus.WarnLevel)
	os.Exit(m.Run())
}
