// Package registries reads k3s's registries.yaml (/etc/k1s/registries.yaml) and turns it into
// what k1s's containerd needs: a config_path tree of hosts.toml files, the CRI's registry
// credentials, and a local proxy for what upstream containerd cannot do itself (repository
// rewrites and static bearer tokens).
package registries

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Registry is the content of registries.yaml.
type Registry struct {
	// Mirrors maps a registry host (or "*", every registry without its own entry) to the
	// endpoints its images are pulled from.
	Mirrors map[string]Mirror
	// Configs maps an endpoint's host (or "*") to its TLS settings and credentials.
	Configs map[string]Config
	// DisableDefaultEndpoint (--disable-default-registry-endpoint, not in the file): a
	// mirrored registry is pulled from its mirrors only, never from itself.
	DisableDefaultEndpoint bool
}

// Mirror is where a registry's images are pulled from before the registry itself.
type Mirror struct {
	// Endpoints are URLs, tried in order. One written without a scheme gets https, or http
	// for localhost on a port other than 443, as in k3s.
	Endpoints []string
	// Rewrites rename the repository for every endpoint; the first that matches applies, in
	// the file's order.
	Rewrites []Rewrite
}

// Rewrite renames repositories that match Pattern, with regexp's ReplaceAllString.
type Rewrite struct {
	Pattern     *regexp.Regexp
	Replacement string
}

// Config is how to talk to an endpoint.
type Config struct {
	Auth *Auth
	TLS  *TLS
}

// Auth holds an endpoint's credentials.
type Auth struct {
	Username, Password string
	// Auth is base64 of "username:password".
	Auth string
	// IdentityToken is an OAuth2 refresh token, exchanged for access tokens.
	IdentityToken string
	// Token is a bearer token sent to the registry as it is.
	Token string
}

// TLS holds an endpoint's TLS settings; files are absolute paths.
type TLS struct {
	CAFile, CertFile, KeyFile string
	InsecureSkipVerify        bool
}

// Load reads path; a missing file means no registries configuration.
func Load(path string) (*Registry, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &Registry{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the registries file: %w", err)
	}
	r, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// Parse reads registries.yaml's content. Unknown keys are errors, and every error is one line
// that begins with the key path it is about.
//
// It walks yaml.v3's node tree by hand: neither yaml.v3's KnownFields nor sigs.k8s.io/yaml's
// strict mode names the key path, and both report several problems in a multi-line message.
func Parse(data []byte) (*Registry, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("not valid YAML: %w", err)
	}
	r := &Registry{Mirrors: map[string]Mirror{}, Configs: map[string]Config{}}
	if len(doc.Content) == 0 {
		return r, nil
	}
	err := decodeFields("", doc.Content[0], fields{
		"mirrors": func(path string, n *yaml.Node) error {
			return decodeMap(path, n, func(path, key string, n *yaml.Node) error {
				if err := checkName(path, key); err != nil {
					return err
				}
				m, err := decodeMirror(path, n)
				r.Mirrors[key] = m
				return err
			})
		},
		"configs": func(path string, n *yaml.Node) error {
			return decodeMap(path, n, func(path, key string, n *yaml.Node) error {
				if err := checkName(path, key); err != nil {
					return err
				}
				c, err := decodeConfig(path, n)
				r.Configs[key] = c
				return err
			})
		},
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

func decodeMirror(path string, n *yaml.Node) (Mirror, error) {
	var m Mirror
	err := decodeFields(path, n, fields{
		"endpoint": func(path string, n *yaml.Node) error {
			return decodeList(path, n, func(path string, n *yaml.Node) error {
				s, err := decodeString(path, n)
				if err != nil {
					return err
				}
				u, err := parseEndpoint(s)
				if err != nil {
					return fmt.Errorf("%s: %w", path, err)
				}
				m.Endpoints = append(m.Endpoints, u)
				return nil
			})
		},
		"rewrite": func(path string, n *yaml.Node) error {
			return decodeMap(path, n, func(path, pattern string, n *yaml.Node) error {
				replacement, err := decodeString(path, n)
				if err != nil {
					return err
				}
				re, err := regexp.Compile(pattern)
				if err != nil {
					var se *syntax.Error
					if errors.As(err, &se) {
						return fmt.Errorf("%s: invalid regular expression: %s", path, se.Code)
					}
					return fmt.Errorf("%s: invalid regular expression: %w", path, err)
				}
				m.Rewrites = append(m.Rewrites, Rewrite{Pattern: re, Replacement: replacement})
				return nil
			})
		},
	})
	return m, err
}

func decodeConfig(path string, n *yaml.Node) (Config, error) {
	var c Config
	err := decodeFields(path, n, fields{
		"auth": func(path string, n *yaml.Node) error {
			a := &Auth{}
			// identity_token is what k3s reads; identitytoken is containerd's spelling.
			err := decodeFields(path, n, fields{
				"username":       stringField(&a.Username),
				"password":       stringField(&a.Password),
				"auth":           stringField(&a.Auth),
				"token":          stringField(&a.Token),
				"identity_token": stringField(&a.IdentityToken),
				"identitytoken":  stringField(&a.IdentityToken),
			})
			if err != nil {
				return err
			}
			c.Auth = a
			return checkAuth(path, a)
		},
		"tls": func(path string, n *yaml.Node) error {
			t := &TLS{}
			err := decodeFields(path, n, fields{
				"ca_file":   stringField(&t.CAFile),
				"cert_file": stringField(&t.CertFile),
				"key_file":  stringField(&t.KeyFile),
				"insecure_skip_verify": func(path string, n *yaml.Node) error {
					if err := resolve(n).Decode(&t.InsecureSkipVerify); err != nil {
						return fmt.Errorf("%s: must be true or false (line %d)", path, n.Line)
					}
					return nil
				},
			})
			if err != nil {
				return err
			}
			c.TLS = t
			return checkTLS(path, t)
		},
	})
	return c, err
}

// checkName rejects names that are not a registry host: each becomes a directory name.
func checkName(path, name string) error {
	if name == "*" {
		return nil
	}
	u, err := url.Parse("//" + name)
	if err != nil || u.Host != name || name == "." || name == ".." || strings.ContainsAny(name, `\`) {
		return fmt.Errorf("%s: not a registry host name such as registry.example.com:5000 (no scheme, no path), or \"*\"", path)
	}
	return nil
}

// parseEndpoint validates an endpoint URL and gives it a scheme if it has none.
func parseEndpoint(s string) (string, error) {
	if !strings.Contains(s, "://") {
		s = defaultScheme(strings.SplitN(s, "/", 2)[0]) + "://" + s
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%q is not an http or https URL with a host", s)
	}
	return u.String(), nil
}

// defaultScheme is k3s's (and containerd's) choice for a host written without a scheme:
// http for localhost on a port other than 443, https everywhere else.
func defaultScheme(host string) string {
	h, port, err := net.SplitHostPort(host)
	if err != nil || port == "443" {
		return "https"
	}
	if ip := net.ParseIP(h); h == "localhost" || (ip != nil && ip.IsLoopback()) {
		return "http"
	}
	return "https"
}

func checkAuth(path string, a *Auth) error {
	if (a.Username == "") != (a.Password == "") {
		return fmt.Errorf("%s: username and password must be set together", path)
	}
	if a.Auth != "" {
		b, err := base64.StdEncoding.DecodeString(a.Auth)
		if err != nil || !strings.Contains(string(b), ":") {
			return fmt.Errorf("%s.auth: must be base64 of username:password", path)
		}
	}
	return nil
}

// checkTLS loads every file now: a mistake then stops k1s at start, not every pull.
func checkTLS(path string, t *TLS) error {
	if (t.CertFile == "") != (t.KeyFile == "") {
		return fmt.Errorf("%s: cert_file and key_file must be set together", path)
	}
	read := func(key, file string) ([]byte, error) {
		if !filepath.IsAbs(file) {
			return nil, fmt.Errorf("%s.%s: %q must be an absolute path", path, key, file)
		}
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("%s.%s: %w", path, key, err)
		}
		return data, nil
	}
	if t.CAFile != "" {
		data, err := read("ca_file", t.CAFile)
		if err != nil {
			return err
		}
		if !x509.NewCertPool().AppendCertsFromPEM(data) {
			return fmt.Errorf("%s.ca_file: %s holds no PEM certificate", path, t.CAFile)
		}
	}
	if t.CertFile != "" {
		cert, err := read("cert_file", t.CertFile)
		if err != nil {
			return err
		}
		key, err := read("key_file", t.KeyFile)
		if err != nil {
			return err
		}
		if _, err := tls.X509KeyPair(cert, key); err != nil {
			return fmt.Errorf("%s: cert_file and key_file: %w", path, err)
		}
	}
	return nil
}

// fields decodes a mapping with a fixed set of keys, each to its function.
type fields map[string]func(path string, n *yaml.Node) error

func decodeFields(path string, n *yaml.Node, known fields) error {
	where := path
	if where == "" {
		where = "top level"
	}
	return walkMapping(where, n, func(k, v *yaml.Node) error {
		p := k.Value
		if path != "" {
			p = path + "." + k.Value
		}
		f, ok := known[k.Value]
		if !ok {
			keys := make([]string, 0, len(known))
			for key := range known {
				keys = append(keys, key)
			}
			slices.Sort(keys)
			return fmt.Errorf("%s: unknown key (line %d); expected %s", p, k.Line, strings.Join(keys, ", "))
		}
		return f(p, v)
	})
}

// decodeMap decodes a mapping whose keys are names (registries, patterns), in file order.
func decodeMap(path string, n *yaml.Node, each func(path, key string, n *yaml.Node) error) error {
	return walkMapping(path, n, func(k, v *yaml.Node) error {
		return each(path+"."+strconv.Quote(k.Value), k.Value, v)
	})
}

func walkMapping(path string, n *yaml.Node, each func(k, v *yaml.Node) error) error {
	n = resolve(n)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("%s: must be a mapping (line %d)", path, n.Line)
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if seen[k.Value] {
			return fmt.Errorf("%s: key %q appears twice (line %d)", path, k.Value, k.Line)
		}
		seen[k.Value] = true
		if err := each(k, n.Content[i+1]); err != nil {
			return err
		}
	}
	return nil
}

func decodeList(path string, n *yaml.Node, each func(path string, n *yaml.Node) error) error {
	n = resolve(n)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		return fmt.Errorf("%s: must be a list (line %d)", path, n.Line)
	}
	for i, item := range n.Content {
		if err := each(fmt.Sprintf("%s[%d]", path, i), item); err != nil {
			return err
		}
	}
	return nil
}

func decodeString(path string, n *yaml.Node) (string, error) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode {
		return "", fmt.Errorf("%s: must be a string (line %d)", path, n.Line)
	}
	if isNull(n) {
		return "", nil
	}
	return n.Value, nil
}

// stringField decodes a string into dst, once: aliases of one setting may not both be set.
func stringField(dst *string) func(path string, n *yaml.Node) error {
	return func(path string, n *yaml.Node) error {
		s, err := decodeString(path, n)
		if err != nil || s == "" {
			return err
		}
		if *dst != "" {
			return fmt.Errorf("%s: set twice under different names (line %d)", path, n.Line)
		}
		*dst = s
		return nil
	}
}

func resolve(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode {
		return n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }
