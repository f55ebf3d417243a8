package containerd

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"

	"golang.org/x/sys/unix"
)

// Config is what a node decides about its containerd.
type Config struct {
	// Root is containerd's persistent directory (<data-dir>/agent/containerd).
	Root string
	// ConfigFile is where k1s writes its configuration; LogFile where it logs.
	ConfigFile string
	LogFile    string
	// State is its runtime directory (/run/k1s/containerd).
	State string
	// Socket is the gRPC socket.
	Socket string
	// BinDir holds runc, the shim and the CNI plugins (the payload).
	BinDir string
	// OptDir replaces /opt/containerd.
	OptDir string
	// CNIConfDir is where the node's network writes its CNI configuration.
	CNIConfDir string
	// PauseImage is the sandbox image, already imported and never pulled.
	PauseImage string
	// Snapshotter is overlayfs or, where overlayfs does not work, native.
	Snapshotter string
	// RestrictOOMScoreAdj is needed without CAP_SYS_RESOURCE (field notes §4).
	RestrictOOMScoreAdj bool
	// SystemdCgroup selects the systemd cgroup driver.
	SystemdCgroup bool
	// StreamingPort is where the CRI serves exec and attach streams, on 127.0.0.1.
	StreamingPort int
	// Registry is the CRI's registry section: config_path and credentials
	// (registries.Registry.CRIConfig).
	Registry string
	// TemplateFile, if it exists, replaces the built-in template (as k3s's
	// config.toml.tmpl does); it is executed with this Config.
	TemplateFile string
}

// configTemplate is containerd's configuration, version 4: the current version of containerd
// 2.4 (a version 3 file still loads, but is migrated with a warning on every start).
const configTemplate = `version = 4
root = {{ printf "%q" .Root }}
state = {{ printf "%q" .State }}

[plugins."io.containerd.server.v1.grpc"]
  address = {{ printf "%q" .Socket }}

[plugins."io.containerd.server.v1.ttrpc"]
  address = {{ printf "%q" (print .Socket ".ttrpc") }}

[plugins."io.containerd.internal.v1.opt"]
  path = {{ printf "%q" .OptDir }}

[plugins."io.containerd.cri.v1.images"]
  snapshotter = {{ printf "%q" .Snapshotter }}
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = {{ printf "%q" .PauseImage }}
{{ .Registry }}

[plugins."io.containerd.cri.v1.runtime"]
  enable_selinux = false
  # Pod network namespaces under /run/k1s, not /run/netns where other runtimes keep theirs.
  netns_mounts_under_state_dir = true
  restrict_oom_score_adj = {{ .RestrictOOMScoreAdj }}
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      runtime_path = {{ printf "%q" (print .BinDir "/containerd-shim-runc-v2") }}
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = {{ printf "%q" (print .BinDir "/runc") }}
        Root = {{ printf "%q" (print .State "/runc") }}
        SystemdCgroup = {{ .SystemdCgroup }}
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = [{{ printf "%q" .BinDir }}]
    conf_dir = {{ printf "%q" .CNIConfDir }}
    # containerd sets a pod's lo up itself, instead of running the loopback plugin on every pod's
    # start and stop: two process starts fewer per pod, which a burst of pods on a small board
    # pays for in CPU.
    use_internal_loopback = true

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "{{ .StreamingPort }}"
`

// Render returns the configuration file's content.
func (c *Config) Render() ([]byte, error) {
	text := configTemplate
	source := "built-in template"
	if c.TemplateFile != "" {
		data, err := os.ReadFile(c.TemplateFile)
		switch {
		case err == nil:
			text, source = string(data), c.TemplateFile
		case !errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("reading containerd template %s: %w", c.TemplateFile, err)
		}
	}
	tmpl, err := template.New("containerd").Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("containerd template %s is malformed: %w", source, err)
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, c); err != nil {
		return nil, fmt.Errorf("containerd template %s: %w", source, err)
	}
	return buf.Bytes(), nil
}

// HasCapSysResource reports whether this process may lower oom_score_adj; where it may not
// (containers, LXC), runc fails every sandbox unless containerd restricts the adjustment.
func HasCapSysResource() bool {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && caps&(1<<unix.CAP_SYS_RESOURCE) != 0
		}
	}
	return false
}

// OverlaySupported reports whether an overlay filesystem can be mounted with its upper
// directory under dir, by trying it. containerd's overlayfs snapshotter needs exactly that.
func OverlaySupported(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	probe, err := os.MkdirTemp(dir, ".overlay-probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(probe)
	for _, d := range []string{"lower", "upper", "work", "merged"} {
		if err := os.Mkdir(filepath.Join(probe, d), 0o700); err != nil {
			return err
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", filepath.Join(probe, "lower"), filepath.Join(probe, "upper"), filepath.Join(probe, "work"))
	merged := filepath.Join(probe, "merged")
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		return err
	}
	return unix.Unmount(merged, 0)
}
