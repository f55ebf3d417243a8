package registries

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
)

func mustParse(t *testing.T, yaml string) *Registry {
	t.Helper()
	r, err := Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestWriteHostsDir(t *testing.T) {
	tmp := t.TempDir()
	cert, key := writeCert(t, tmp, "client")
	r := mustParse(t, `
mirrors:
  docker.io:
    endpoint: ["https://registry.example:5000", "https://docker.io"]
    rewrite:
      "^library/(.*)": "mirror/$1"
  quay.io:
    endpoint:
      - registry.example:5000
      - https://mirror.example/prefix/v2
      - https://registry.example:5000/v2
  "*":
    endpoint: ["http://localhost:5000"]
configs:
  "registry.example:5000":
    auth: {username: u, password: p}
    tls: {ca_file: `+cert+`, cert_file: `+cert+`, key_file: `+key+`}
  "tls-only.example":
    tls: {insecure_skip_verify: true}
  "token.example":
    auth: {token: t0k}
  "auth-only.example":
    auth: {username: u, password: p}
`)
	dir := filepath.Join(tmp, "certs.d")
	if err := os.MkdirAll(filepath.Join(dir, "stale.example"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "stale.example", "hosts.toml"), "server = \"https://stale.example\"\n")
	if !r.NeedsProxy() {
		t.Error("NeedsProxy = false with a rewrite and a token")
	}
	if err := r.WriteHostsDir(dir, ""); err == nil || !strings.Contains(err.Error(), "needs the registry proxy") {
		t.Errorf("WriteHostsDir without a proxy = %v", err)
	}
	if err := r.WriteHostsDir(dir, "http://127.0.0.1:7000"); err != nil {
		t.Fatal(err)
	}

	const head = "# Written by k1s from registries.yaml at every start.\n"
	const pull = "  capabilities = [\"pull\", \"resolve\"]\n"
	want := map[string]string{
		"_default": head + `
[host."http://localhost:5000/v2"]
` + pull,
		"docker.io": head + `server = "https://registry-1.docker.io"

[host."http://127.0.0.1:7000/docker.io/0/v2"]
` + pull + `  override_path = true
`,
		"quay.io": head + `server = "https://quay.io"

[host."https://registry.example:5000/v2"]
` + pull + `  ca = "` + cert + `"
  client = [["` + cert + `", "` + key + `"]]

[host."https://mirror.example/prefix/v2"]
` + pull + `  override_path = true
`,
		// A config with TLS needs its own hosts.toml; the "*" mirror still applies there.
		"registry.example:5000": head + `server = "https://registry.example:5000"
ca = "` + cert + `"
client = [["` + cert + `", "` + key + `"]]

[host."http://localhost:5000/v2"]
` + pull,
		"tls-only.example": head + `server = "https://tls-only.example"
skip_verify = true

[host."http://localhost:5000/v2"]
` + pull,
		"token.example": head + `server = "https://token.example"

[host."http://localhost:5000/v2"]
` + pull + `
[host."http://127.0.0.1:7000/token.example/1/v2"]
` + pull + `  override_path = true
`,
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if got := strings.Join(names, " "); got != "_default docker.io quay.io registry.example:5000 tls-only.example token.example" {
		t.Errorf("host directories: %s", got)
	}
	for name, content := range want {
		data, err := os.ReadFile(filepath.Join(dir, name, "hosts.toml"))
		if err != nil {
			t.Error(err)
			continue
		}
		if string(data) != content {
			t.Errorf("%s/hosts.toml:\n%s\nwant:\n%s", name, data, content)
		}
		var v map[string]any
		if err := toml.Unmarshal(data, &v); err != nil {
			t.Errorf("%s/hosts.toml is not TOML: %v", name, err)
		}
	}
	if leftovers, _ := filepath.Glob(filepath.Join(tmp, ".certs.d*")); len(leftovers) != 0 {
		t.Errorf("temporary directories left: %v", leftovers)
	}

	if err := (&Registry{}).WriteHostsDir(dir, ""); err != nil {
		t.Fatal(err)
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
		t.Errorf("an empty registries.yaml leaves %v, %v", entries, err)
	}
}

func TestCRIConfig(t *testing.T) {
	r := mustParse(t, `
mirrors:
  docker.io:
    endpoint: ["https://mirror.example"]
configs:
  docker.io:
    auth: {username: hub, password: "q\"b\\s\nl\u0001"}
  "*":
    auth: {auth: YW55Om9uZQ==}
  private.example:
    auth: {identity_token: id}
  token.example:
    auth: {token: t}
  tls.example:
    tls: {insecure_skip_verify: true}
`)
	got := r.CRIConfig("/var/lib/k1s/certs.d")
	const want = `[plugins."io.containerd.cri.v1.images".registry]
  config_path = "/var/lib/k1s/certs.d"
[plugins."io.containerd.cri.v1.images".registry.configs."mirror.example".auth]
  auth = "YW55Om9uZQ=="
[plugins."io.containerd.cri.v1.images".registry.configs."private.example".auth]
  identitytoken = "id"
[plugins."io.containerd.cri.v1.images".registry.configs."registry-1.docker.io".auth]
  username = "hub"
  password = "q\"b\\s\u000Al\u0001"
`
	if got != want {
		t.Errorf("CRIConfig:\n%s\nwant:\n%s", got, want)
	}
	// It must read back as containerd's CRI config does.
	var cfg struct {
		Plugins map[string]struct {
			Registry struct {
				ConfigPath string `toml:"config_path"`
				Configs    map[string]struct {
					Auth struct{ Username, Password, Auth, IdentityToken string }
				}
			}
		}
	}
	if err := toml.Unmarshal([]byte(got), &cfg); err != nil {
		t.Fatal(err)
	}
	hub := cfg.Plugins["io.containerd.cri.v1.images"].Registry.Configs["registry-1.docker.io"].Auth
	if hub.Username != "hub" || hub.Password != "q\"b\\s\nl\x01" {
		t.Errorf("read back: %+v", hub)
	}
}

// With --disable-default-registry-endpoint the last mirror endpoint is the root entry, which
// containerd tries last instead of the registry itself.
func TestWriteHostsDirWithoutDefaultEndpoint(t *testing.T) {
	r := mustParse(t, `
mirrors:
  docker.io:
    endpoint: ["https://a.example:5000", "https://b.example:5000"]
  ghcr.io:
    endpoint: ["https://c.example"]
    rewrite: {"^(.*)": "ghcr/$1"}
`)
	r.DisableDefaultEndpoint = true
	dir := filepath.Join(t.TempDir(), "certs.d")
	if err := r.WriteHostsDir(dir, "http://127.0.0.1:7000"); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"docker.io": "# Written by k1s from registries.yaml at every start.\n" +
			"server = \"https://b.example:5000/v2\"\n" +
			"\n[host.\"https://a.example:5000/v2\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
		"ghcr.io": "# Written by k1s from registries.yaml at every start.\n" +
			"server = \"http://127.0.0.1:7000/ghcr.io/0/v2\"\noverride_path = true\n",
	} {
		data, err := os.ReadFile(filepath.Join(dir, name, "hosts.toml"))
		if err != nil || string(data) != want {
			t.Errorf("%s/hosts.toml: %v\n%s\nwant:\n%s", name, err, data, want)
		}
	}
}
