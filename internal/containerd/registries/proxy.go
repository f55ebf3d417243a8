package registries

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/sirupsen/logrus"
)

// Proxy serves, on 127.0.0.1, the mirror endpoints that upstream containerd cannot use by
// itself: containerd 2.4's hosts.toml has no rewrite (k3s patches its fork) and cannot send a
// static bearer token. Such an endpoint's hosts.toml entry is
// http://127.0.0.1:<port>/<registry dir>/<index>/v2 with override_path; the proxy renames the
// repository with the mirror's rewrites, and pulls from the real endpoint with the endpoint's
// TLS and credentials (basic or token auth, answered by go-containerregistry's transport).
type Proxy struct {
	log      logrus.FieldLogger
	listener net.Listener
	server   *http.Server
	// routes are by "<dir>/<index>", as routePath writes them.
	routes map[string]*route

	mu sync.Mutex
	// transports are authenticated for one repository (bearer tokens are scoped to it), by
	// upstream and repository. A node pulls from few repositories, so they are kept.
	transports map[string]http.RoundTripper
}

type route struct {
	upstream *url.URL // scheme, host and API root
	registry name.Registry
	rewrites []Rewrite
	auth     authn.Authenticator
	base     http.RoundTripper // TLS to the endpoint
}

// NewProxy listens on 127.0.0.1:port (0: any free port) for the endpoints of r that need the
// proxy; it serves once Serve runs.
func NewProxy(r *Registry, port int, log logrus.FieldLogger) (*Proxy, error) {
	p := &Proxy{log: log, routes: map[string]*route{}, transports: map[string]http.RoundTripper{}}
	bases := map[string]http.RoundTripper{}
	for _, f := range r.plan() {
		for i, e := range f.hosts {
			if !e.proxied() {
				continue
			}
			base, ok := bases[e.url.Host]
			if !ok {
				t, err := newTransport(e.config.tls())
				if err != nil {
					return nil, fmt.Errorf("registry proxy for %s: %w", e.url.Host, err)
				}
				base, bases[e.url.Host] = t, t
			}
			var opts []name.Option
			if e.url.Scheme == "http" {
				opts = append(opts, name.Insecure)
			}
			reg, err := name.NewRegistry(e.url.Host, opts...)
			if err != nil {
				return nil, fmt.Errorf("registry proxy for %s: %w", e.url.Host, err)
			}
			if e.url.Path != "/v2" {
				base = pingAtRoot{root: e.url, inner: base}
			}
			p.routes[f.dir+"/"+strconv.Itoa(i)] = &route{upstream: e.url, registry: reg, rewrites: e.rewrites, auth: e.config.authenticator(), base: base}
		}
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("starting the registry proxy (for rewrites and tokens in registries.yaml) on %s: %w", addr, err)
	}
	p.listener = ln
	p.server = &http.Server{Handler: p, ReadHeaderTimeout: 30 * time.Second}
	return p, nil
}

// URL is the proxy's base URL, for WriteHostsDir.
func (p *Proxy) URL() string { return "http://" + p.listener.Addr().String() }

// Serve serves until ctx ends. It then drops the connections at once rather than waiting for
// layer downloads to end: containerd retries them.
func (p *Proxy) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { p.server.Close() })
	defer stop()
	if err := p.server.Serve(p.listener); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("registry proxy: %w", err)
	}
	return nil
}

// Close stops the proxy, whether it served or not.
func (p *Proxy) Close() error {
	err := p.server.Close()
	if lerr := p.listener.Close(); lerr != nil && !errors.Is(lerr, net.ErrClosed) {
		err = errors.Join(err, lerr)
	}
	return err
}

// requestPath is what containerd requests under a route: /<dir>/<index>/v2/<repository>/
// followed by manifests/<ref>, blobs/<digest>, tags/list or referrers/<digest>.
var requestPath = regexp.MustCompile(`^/([^/]+/[0-9]+)/v2/(.+)/((?:manifests|blobs|tags|referrers)/[^/]+)$`)

// forwardedHeaders are the request headers the registry API depends on.
var forwardedHeaders = []string{"Accept", "Accept-Encoding", "Range", "If-Range", "If-None-Match", "User-Agent"}

// hopHeaders are about one connection, not the response.
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// ServeHTTP answers one of containerd's pull requests from the route's endpoint.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		registryError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "the k1s registry proxy only serves pulls")
		return
	}
	m := requestPath.FindStringSubmatch(req.URL.Path)
	var rt *route
	if m != nil {
		rt = p.routes[m[1]]
	}
	if rt == nil {
		registryError(w, http.StatusNotFound, "NAME_UNKNOWN", "no registries.yaml endpoint at "+req.URL.Path)
		return
	}
	repo := rt.rewrite(m[2])
	ref, err := name.NewRepository(rt.registry.Name() + "/" + repo)
	if err != nil {
		registryError(w, http.StatusBadRequest, "NAME_INVALID", fmt.Sprintf("repository %q (rewritten from %q): %v", repo, m[2], err))
		return
	}
	t, err := p.transport(req.Context(), rt, ref)
	if err != nil {
		var terr *transport.Error
		if errors.As(err, &terr) && terr.StatusCode == http.StatusUnauthorized {
			p.log.Warnf("registry proxy: %s refused the credentials for %s: check configs.%q.auth in registries.yaml", rt.upstream.Host, repo, rt.upstream.Host)
			registryError(w, http.StatusUnauthorized, "UNAUTHORIZED", fmt.Sprintf("%s refused the credentials in registries.yaml for %s: %v", rt.upstream.Host, repo, err))
			return
		}
		registryError(w, http.StatusBadGateway, "UNAVAILABLE", fmt.Sprintf("reaching %s: %v", rt.upstream.Host, err))
		return
	}

	out := *rt.upstream
	out.Path = rt.upstream.Path + "/" + ref.RepositoryStr() + "/" + m[3]
	// ns (the registry containerd pulls for) is kept: containerd would send it to the
	// endpoint itself, and pull-through caches need it.
	out.RawQuery = req.URL.RawQuery
	oreq, err := http.NewRequestWithContext(req.Context(), req.Method, out.String(), nil)
	if err != nil {
		registryError(w, http.StatusBadRequest, "UNSUPPORTED", err.Error())
		return
	}
	for _, h := range forwardedHeaders {
		if v := req.Header.Values(h); len(v) > 0 {
			oreq.Header[h] = v
		}
	}
	client := &http.Client{
		Transport: t,
		// Redirects within the endpoint need its credentials, so the proxy follows them;
		// others (blobs on a storage service) go back to containerd, which follows them
		// without sending anything secret.
		CheckRedirect: func(r *http.Request, via []*http.Request) error {
			if r.URL.Host != rt.upstream.Host || len(via) >= 10 {
				return http.ErrUseLastResponse
			}
			return nil
		},
	}
	resp, err := client.Do(oreq)
	if err != nil {
		registryError(w, http.StatusBadGateway, "UNAVAILABLE", fmt.Sprintf("reaching %s: %v", rt.upstream.Host, err))
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized {
		// The credentials (or their absence) were refused. Without a challenge containerd
		// takes this 401 as the answer, and its pull error (the kubelet's ErrImagePull
		// event) ends in "401 Unauthorized", plus the registry's error body on a GET
		// ("unauthorized: …"). With the endpoint's challenge it would try to authenticate
		// to the proxy itself, with no credentials for 127.0.0.1, and fail with "no basic
		// auth credentials" or "authorization failed", which hide the cause.
		resp.Header.Del("Www-Authenticate")
		p.log.Warnf("registry proxy: %s answered 401 Unauthorized for %s: check configs.%q.auth in registries.yaml", rt.upstream.Host, repo, rt.upstream.Host)
	}
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	for _, h := range hopHeaders {
		w.Header().Del(h)
	}
	w.WriteHeader(resp.StatusCode)
	if _, err := io.Copy(w, resp.Body); err != nil {
		p.log.Debugf("registry proxy: copying %s: %v", out.String(), err)
	}
}

// rewrite applies the first rewrite whose pattern matches the repository.
func (rt *route) rewrite(repo string) string {
	for _, rw := range rt.rewrites {
		if rw.Pattern.MatchString(repo) {
			return rw.Pattern.ReplaceAllString(repo, rw.Replacement)
		}
	}
	return repo
}

// transport is authenticated to pull ref from the route's endpoint.
func (p *Proxy) transport(ctx context.Context, rt *route, ref name.Repository) (http.RoundTripper, error) {
	key := rt.upstream.String() + " " + ref.RepositoryStr()
	p.mu.Lock()
	t, ok := p.transports[key]
	p.mu.Unlock()
	if ok {
		return t, nil
	}
	t, err := transport.NewWithContext(ctx, rt.registry, rt.auth, rt.base, []string{ref.Scope(transport.PullScope)})
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if existing, ok := p.transports[key]; ok {
		return existing, nil // made at the same time by another request
	}
	p.transports[key] = t
	return t, nil
}

func (c *Config) authenticator() authn.Authenticator {
	a := c.auth()
	if *a == (Auth{}) {
		return authn.Anonymous
	}
	return authn.FromConfig(authn.AuthConfig{
		Username:      a.Username,
		Password:      a.Password,
		Auth:          a.Auth,
		IdentityToken: a.IdentityToken,
		RegistryToken: a.Token,
	})
}

// newTransport is an HTTP transport with an endpoint's TLS settings.
func newTransport(t *TLS) (http.RoundTripper, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{}
	if t == nil {
		return tr, nil
	}
	tr.TLSClientConfig.InsecureSkipVerify = t.InsecureSkipVerify
	if t.CAFile != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		data, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading the CA file: %w", err)
		}
		if !pool.AppendCertsFromPEM(data) {
			return nil, fmt.Errorf("%s holds no PEM certificate", t.CAFile)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("loading the client certificate: %w", err)
		}
		tr.TLSClientConfig.Certificates = []tls.Certificate{cert}
	}
	return tr, nil
}

// pingAtRoot sends go-containerregistry's ping of <host>/v2/ to the API root of an endpoint
// that has its own (override_path); every other request already has the right path.
type pingAtRoot struct {
	root  *url.URL
	inner http.RoundTripper
}

func (p pingAtRoot) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Host == p.root.Host && req.URL.Path == "/v2/" {
		req = req.Clone(req.Context())
		req.URL.Path = p.root.Path + "/"
	}
	return p.inner.RoundTrip(req)
}

// registryError answers as a registry does (distribution spec's error body), which
// containerd includes in its pull error.
func registryError(w http.ResponseWriter, status int, code, message string) {
	type detail struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct {
		Errors []detail `json:"errors"`
	}{[]detail{{code, message}}})
}
