package registries

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// dockerHub is where containerd pulls docker.io's images from.
const dockerHub = "registry-1.docker.io"

// hostsFile is one registry's hosts.toml.
type hostsFile struct {
	// dir is the directory containerd looks the registry up by: its host, or _default.
	dir string
	// server is the registry's own endpoint, which containerd tries last; "" for _default.
	server string
	// tls is the server's.
	tls   *TLS
	hosts []endpoint
}

// endpoint is a mirror endpoint in a hosts.toml.
type endpoint struct {
	// url's path is the API root: /v2, or the endpoint's own path with override.
	url      *url.URL
	override bool
	config   *Config
	rewrites []Rewrite
}

// proxied reports whether the endpoint needs k1s's proxy, for what containerd cannot do.
func (e endpoint) proxied() bool { return len(e.rewrites) > 0 || e.config.auth().Token != "" }

// plan lays out the hosts.toml files, sorted: the same layout names the proxy's routes.
func (r *Registry) plan() []hostsFile {
	var names []string
	for name := range r.Mirrors {
		names = append(names, name)
	}
	// A config that containerd must see in hosts.toml needs a directory for its host.
	for name, c := range r.Configs {
		if c.TLS != nil || c.auth().Token != "" {
			names = append(names, registryName(name))
		}
	}
	slices.Sort(names)
	names = slices.Compact(names)

	files := make([]hostsFile, 0, len(names))
	for _, name := range names {
		f := hostsFile{dir: name}
		var server *endpoint
		if name == "*" {
			f.dir = "_default"
			f.tls = r.configFor("*").tls()
		} else {
			u, _ := apiRoot(defaultScheme(name) + "://" + name)
			server = &endpoint{url: u, config: r.configFor(u.Host)}
			f.server = u.Scheme + "://" + u.Host
			f.tls = server.config.tls()
		}
		mirror, ok := r.Mirrors[name]
		if !ok {
			mirror = r.Mirrors["*"]
		}
		seen := map[string]bool{}
		for i, raw := range mirror.Endpoints {
			u, override := apiRoot(raw)
			if seen[u.String()] {
				continue
			}
			seen[u.String()] = true
			// The registry itself as the last endpoint is the server, without rewrites, as
			// in k3s: containerd tries the server last anyway.
			if server != nil && i == len(mirror.Endpoints)-1 && u.String() == server.url.String() {
				continue
			}
			f.hosts = append(f.hosts, endpoint{url: u, override: override, config: r.configFor(u.Host), rewrites: mirror.Rewrites})
		}
		// containerd cannot send a static bearer token: the proxy reaches the server for it.
		if server != nil && server.proxied() {
			f.hosts = append(f.hosts, *server)
		}
		files = append(files, f)
	}
	return files
}

// apiRoot parses a validated endpoint URL as containerd will use it: a path of "", "/" or
// "/v2" means the standard API root /v2; any other path is the API root itself
// (override_path), as in k3s.
func apiRoot(endpoint string) (*url.URL, bool) {
	u, _ := url.Parse(endpoint)
	if u.Host == "docker.io" {
		u.Host = dockerHub
	}
	switch u.Path {
	case "", "/", "/v2":
		u.Path = "/v2"
		return u, false
	}
	return u, true
}

// registryName is the registry a host serves: docker.io for Docker Hub's hosts.
func registryName(host string) string {
	if host == dockerHub || host == "index.docker.io" {
		return "docker.io"
	}
	return host
}

// configFor is the config for an endpoint's host: its own entry (any of Docker Hub's names
// for Docker Hub), or else "*".
func (r *Registry) configFor(host string) *Config {
	keys := []string{host, "*"}
	if registryName(host) == "docker.io" {
		keys = []string{dockerHub, "index.docker.io", "docker.io", "*"}
	}
	for _, k := range keys {
		if c, ok := r.Configs[k]; ok {
			return &c
		}
	}
	return nil
}

func (c *Config) auth() *Auth {
	if c == nil || c.Auth == nil {
		return &Auth{}
	}
	return c.Auth
}

func (c *Config) tls() *TLS {
	if c == nil {
		return nil
	}
	return c.TLS
}

// NeedsProxy reports whether some endpoint needs the registry proxy (NewProxy): one with
// rewrites or a bearer token.
func (r *Registry) NeedsProxy() bool {
	for _, f := range r.plan() {
		if slices.ContainsFunc(f.hosts, endpoint.proxied) {
			return true
		}
	}
	return false
}

// WriteHostsDir makes dir, containerd's config_path, hold exactly one <registry>/hosts.toml
// per registry that registries.yaml configures ("*" is _default). proxyURL is the registry
// proxy's (Proxy.URL), or "" when NeedsProxy is false. The tree is built beside dir and
// swapped in, so that a failure leaves the previous one and no stale registry survives.
func (r *Registry) WriteHostsDir(dir, proxyURL string) error {
	parent, base := filepath.Split(filepath.Clean(dir))
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", parent, err)
	}
	tmp, err := os.MkdirTemp(parent, "."+base+".new-")
	if err != nil {
		return fmt.Errorf("writing registry hosts to %s: %w", dir, err)
	}
	defer os.RemoveAll(tmp)
	for _, f := range r.plan() {
		data, err := f.render(proxyURL, r.DisableDefaultEndpoint)
		if err != nil {
			return err
		}
		if err := os.Mkdir(filepath.Join(tmp, f.dir), 0o700); err != nil {
			return fmt.Errorf("writing registry hosts to %s: %w", dir, err)
		}
		if err := os.WriteFile(filepath.Join(tmp, f.dir, "hosts.toml"), data, 0o600); err != nil {
			return fmt.Errorf("writing registry hosts to %s: %w", dir, err)
		}
	}
	old := filepath.Join(parent, "."+base+".old")
	if err := os.RemoveAll(old); err != nil {
		return fmt.Errorf("removing %s: %w", old, err)
	}
	if err := os.Rename(dir, old); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("replacing %s: %w", dir, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("replacing %s: %w", dir, err)
	}
	return os.RemoveAll(old)
}

// render writes containerd's hosts.toml format (core/remotes/docker/config/hosts.go): the
// server and its TLS first, then one [host] table per endpoint, in the order to try them.
//
// containerd always tries the file's root entry last, and the registry itself when it has no
// server: with disableDefault the last mirror endpoint takes the root entry's place.
func (f hostsFile) render(proxyURL string, disableDefault bool) ([]byte, error) {
	var b strings.Builder
	b.WriteString("# Written by k1s from registries.yaml at every start.\n")
	hosts := f.hosts
	if disableDefault && len(hosts) > 0 {
		hosts = hosts[:len(hosts)-1]
		u, override, tls, err := f.endpoint(len(hosts), proxyURL)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "server = %s\n", quote(u))
		if override {
			b.WriteString("override_path = true\n")
		}
		writeTLS(&b, "", tls)
	} else {
		if f.server != "" {
			fmt.Fprintf(&b, "server = %s\n", quote(f.server))
		}
		writeTLS(&b, "", f.tls)
	}
	for i := range hosts {
		u, override, tls, err := f.endpoint(i, proxyURL)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "\n[host.%s]\n  capabilities = [\"pull\", \"resolve\"]\n", quote(u))
		if override {
			b.WriteString("  override_path = true\n")
		}
		writeTLS(&b, "  ", tls)
	}
	return []byte(b.String()), nil
}

// endpoint is where containerd reaches the i-th endpoint: itself, or the proxy's route for it.
func (f hostsFile) endpoint(i int, proxyURL string) (u string, override bool, tls *TLS, err error) {
	e := f.hosts[i]
	if !e.proxied() {
		return e.url.String(), e.override, e.config.tls(), nil
	}
	if proxyURL == "" {
		return "", false, nil, fmt.Errorf("registries.yaml: %s needs the registry proxy (rewrite or token), which is not running", e.url.Host)
	}
	// The proxy does TLS and authentication; containerd appends /<repo>/manifests/… to the
	// path as it is.
	return proxyURL + routePath(f.dir, i), true, nil, nil
}

// routePath is where the proxy serves a hosts.toml's i-th endpoint: /<dir>/<i>/v2.
func routePath(dir string, i int) string { return "/" + dir + "/" + strconv.Itoa(i) + "/v2" }

func writeTLS(b *strings.Builder, indent string, t *TLS) {
	if t == nil {
		return
	}
	if t.CAFile != "" {
		fmt.Fprintf(b, "%sca = %s\n", indent, quote(t.CAFile))
	}
	if t.CertFile != "" {
		fmt.Fprintf(b, "%sclient = [[%s, %s]]\n", indent, quote(t.CertFile), quote(t.KeyFile))
	}
	if t.InsecureSkipVerify {
		fmt.Fprintf(b, "%sskip_verify = true\n", indent)
	}
}

// CRIConfig is the CRI images plugin's registry section for containerd's config.toml: the
// hosts directory (WriteHostsDir) and the credentials, which hosts.toml cannot hold. Those are
// the deprecated registry.configs.<host>.auth, still read by containerd 2.4 (it then pulls
// with its local client, not the transfer service, and warns once at start). Tokens are not
// there: containerd has no use for a static bearer token, so the proxy sends them.
func (r *Registry) CRIConfig(configPath string) string {
	const plugin = `plugins."io.containerd.cri.v1.images".registry`
	var b strings.Builder
	fmt.Fprintf(&b, "[%s]\n  config_path = %s\n", plugin, quote(configPath))
	for _, host := range r.credentialHosts() {
		a := r.configFor(host).auth()
		if a.Username == "" && a.Auth == "" && a.IdentityToken == "" {
			continue
		}
		fmt.Fprintf(&b, "[%s.configs.%s.auth]\n", plugin, quote(host))
		for _, kv := range [][2]string{{"username", a.Username}, {"password", a.Password}, {"auth", a.Auth}, {"identitytoken", a.IdentityToken}} {
			if kv[1] != "" {
				fmt.Fprintf(&b, "  %s = %s\n", kv[0], quote(kv[1]))
			}
		}
	}
	return b.String()
}

// credentialHosts are the hosts containerd asks credentials for (by the host it sent the
// request to), sorted: every config's, and every server and endpoint it reaches itself.
func (r *Registry) credentialHosts() []string {
	var hosts []string
	for k := range r.Configs {
		if k != "*" {
			if registryName(k) == "docker.io" {
				k = dockerHub
			}
			hosts = append(hosts, k)
		}
	}
	for _, f := range r.plan() {
		if f.server != "" {
			u, _ := url.Parse(f.server)
			hosts = append(hosts, u.Host)
		}
		for _, e := range f.hosts {
			if !e.proxied() {
				hosts = append(hosts, e.url.Host)
			}
		}
	}
	slices.Sort(hosts)
	return slices.Compact(hosts)
}

// quote is a TOML basic string.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteRune(c)
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, c)
		default:
			b.WriteRune(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
