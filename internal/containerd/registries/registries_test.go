package registries

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeCert writes a self-signed certificate and its key, and returns their paths.
func writeCert(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	writeFile(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})))
	return certFile, keyFile
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestParse(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeCert(t, dir, "client")
	r, err := Parse([]byte(`
mirrors:
  docker.io:
    endpoint:
      - registry.example:5000
      - "http://localhost:5000"
      - https://mirror.example/prefix/v2
    rewrite:
      "^library/(.*)": "mirror/$1"
      "^(.*)": "all/$1"
  "*":
    endpoint: [localhost:443]
  quay.io:
configs:
  "registry.example:5000":
    auth: {username: u, password: 12345}
    tls:
      ca_file: ` + cert + `
      cert_file: ` + cert + `
      key_file: ` + key + `
      insecure_skip_verify: true
  "id.example":
    auth: {identity_token: tok, auth: dTpw}
  "*":
    auth:
      token: bearer
`))
	if err != nil {
		t.Fatal(err)
	}
	m := r.Mirrors["docker.io"]
	if got, want := strings.Join(m.Endpoints, " "), "https://registry.example:5000 http://localhost:5000 https://mirror.example/prefix/v2"; got != want {
		t.Errorf("endpoints = %s, want %s", got, want)
	}
	if len(m.Rewrites) != 2 || m.Rewrites[0].Pattern.String() != "^library/(.*)" || m.Rewrites[1].Replacement != "all/$1" {
		t.Errorf("rewrites not in the file's order: %+v", m.Rewrites)
	}
	if got := r.Mirrors["*"].Endpoints; len(got) != 1 || got[0] != "https://localhost:443" {
		t.Errorf("* endpoints = %v", got)
	}
	if _, ok := r.Mirrors["quay.io"]; !ok {
		t.Error("a mirror without settings is lost")
	}
	c := r.Configs["registry.example:5000"]
	if *c.Auth != (Auth{Username: "u", Password: "12345"}) || *c.TLS != (TLS{CAFile: cert, CertFile: cert, KeyFile: key, InsecureSkipVerify: true}) {
		t.Errorf("config = %+v %+v", c.Auth, c.TLS)
	}
	if a := r.Configs["id.example"].Auth; a.IdentityToken != "tok" || a.Auth != "dTpw" {
		t.Errorf("auth = %+v", a)
	}
	if r.Configs["*"].Auth.Token != "bearer" {
		t.Errorf("token = %+v", r.Configs["*"].Auth)
	}
}

func TestParseErrors(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeCert(t, dir, "client")
	_, otherKey := writeCert(t, dir, "other")
	notPEM := filepath.Join(dir, "not.pem")
	writeFile(t, notPEM, "hello")
	tls := func(body string) string { return "configs:\n  r.example:\n    tls:\n" + body }

	for _, tc := range []struct{ yaml, want string }{
		{"mirror:\n", `mirror: unknown key (line 1); expected configs, mirrors`},
		{"- a\n", `top level: must be a mapping (line 1)`},
		{"mirrors:\n  docker.io:\n    endpoints: [x]\n", `mirrors."docker.io".endpoints: unknown key (line 3); expected endpoint, rewrite`},
		{"mirrors:\n  docker.io:\n    rewrite:\n      \"^(lib\": x\n", `mirrors."docker.io".rewrite."^(lib": invalid regular expression: missing closing )`},
		{"mirrors:\n  docker.io:\n    rewrite:\n      a: [x]\n", `mirrors."docker.io".rewrite."a": must be a string (line 4)`},
		{"mirrors:\n  docker.io:\n    endpoint: [ftp://x]\n", `mirrors."docker.io".endpoint[0]: "ftp://x" is not an http or https URL with a host`},
		{"mirrors:\n  docker.io:\n    endpoint: [a, \"https://\"]\n", `mirrors."docker.io".endpoint[1]: "https://" is not an http or https URL with a host`},
		{"mirrors:\n  docker.io:\n    endpoint: https://x\n", `mirrors."docker.io".endpoint: must be a list (line 3)`},
		{"mirrors:\n  https://docker.io: {}\n", `mirrors."https://docker.io": not a registry host name such as registry.example.com:5000 (no scheme, no path), or "*"`},
		{"configs:\n  ..: {}\n", `configs."..": not a registry host name such as registry.example.com:5000 (no scheme, no path), or "*"`},
		{"mirrors:\n  a: {}\n  a: {}\n", `mirrors: key "a" appears twice (line 3)`},
		{"configs:\n  r:\n    auth: {username: u}\n", `configs."r".auth: username and password must be set together`},
		{"configs:\n  r:\n    auth: {auth: \"not base64\"}\n", `configs."r".auth.auth: must be base64 of username:password`},
		{"configs:\n  r:\n    auth: {identity_token: a, identitytoken: b}\n", `configs."r".auth.identitytoken: set twice under different names (line 3)`},
		{"configs:\n  r:\n    auth: {user: u}\n", `configs."r".auth.user: unknown key (line 3); expected auth, identity_token, identitytoken, password, token, username`},
		{tls("      insecure_skip_verify: yes please\n"), `configs."r.example".tls.insecure_skip_verify: must be true or false (line 4)`},
		{tls("      cert_file: " + cert + "\n"), `configs."r.example".tls: cert_file and key_file must be set together`},
		{tls("      ca_file: ca.pem\n"), `configs."r.example".tls.ca_file: "ca.pem" must be an absolute path`},
		{tls("      ca_file: /nonexistent/ca.pem\n"), `configs."r.example".tls.ca_file: open /nonexistent/ca.pem: no such file or directory`},
		{tls("      ca_file: " + notPEM + "\n"), `configs."r.example".tls.ca_file: ` + notPEM + ` holds no PEM certificate`},
		{tls("      cert_file: " + cert + "\n      key_file: " + otherKey + "\n"), `configs."r.example".tls: cert_file and key_file: tls: private key does not match public key`},
		{tls("      cert_file: " + key + "\n      key_file: " + key + "\n"), `configs."r.example".tls: cert_file and key_file: tls: failed to find certificate PEM data in certificate input, but did find a private key; PEM inputs may have been switched`},
	} {
		_, err := Parse([]byte(tc.yaml))
		if err == nil || err.Error() != tc.want {
			t.Errorf("Parse(%q)\n got: %v\nwant: %s", tc.yaml, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("Parse(%q): error is not one line: %q", tc.yaml, err)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	r, err := Load(filepath.Join(dir, "registries.yaml"))
	if err != nil || len(r.Mirrors)+len(r.Configs) != 0 {
		t.Errorf("missing file: %+v, %v", r, err)
	}
	for content, want := range map[string]string{
		"mirrors: [":              "registries.yaml: not valid YAML: yaml: line 1: did not find expected node content",
		"mirrors:\n  a: {x: 1}\n": `registries.yaml: mirrors."a".x: unknown key (line 2); expected endpoint, rewrite`,
	} {
		path := filepath.Join(dir, "registries.yaml")
		writeFile(t, path, content)
		if _, err := Load(path); err == nil || err.Error() != filepath.Join(dir, want) {
			t.Errorf("Load(%q) = %v, want %s", content, err, filepath.Join(dir, want))
		}
	}
	if r, err := Parse(nil); err != nil || r == nil {
		t.Errorf("empty file: %v, %v", r, err)
	}
}
