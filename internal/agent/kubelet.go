package agent

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/klog/v2"
	kubeletapp "k8s.io/kubernetes/cmd/kubelet/app"
	kubeletoptions "k8s.io/kubernetes/cmd/kubelet/app/options"
	kubeletconfig "k8s.io/kubernetes/pkg/kubelet/apis/config"
	kubeletconfigvalidation "k8s.io/kubernetes/pkg/kubelet/apis/config/validation"
	"k8s.io/kubernetes/pkg/kubelet/eviction"
	"k8s.io/kubernetes/pkg/kubelet/kubeletconfig/configfiles"
	utilfs "k8s.io/kubernetes/pkg/util/filesystem"

	"github.com/k1s-io/k1s/internal/component"
	"github.com/k1s-io/k1s/internal/fileutil"
	"github.com/k1s-io/k1s/internal/layout"
	"github.com/k1s-io/k1s/internal/pki"
)

// kubeletConfigTemplate is the KubeletConfiguration k1s writes; fmt verbs are filled from
// Config. Settings follow the field notes: webhook authn/authz, no anonymous access, no
// read-only port, relaxed eviction for small disks, system images never garbage collected
// (they are pinned in containerd), and kernel tunables left to the kubelet unless hardened
// (then k1s sets them first), FlexVolume plugins under the data directory rather than
// /usr/libexec/kubernetes. The node's certificates come from the cluster by CSR and are
// renewed by the kubelet itself.
const kubeletConfigTemplate = `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true, cacheTTL: 2m}
  x509: {clientCAFile: %q}
authorization:
  mode: Webhook
cgroupDriver: %s
failCgroupV1: false
clusterDNS: [%q]
clusterDomain: %q
resolvConf: %q
containerRuntimeEndpoint: %q
podLogsDir: %q
volumePluginDir: %q
serializeImagePulls: false
protectKernelDefaults: %t
evictionHard:
  memory.available: 100Mi
  nodefs.available: 5%%
  imagefs.available: 5%%
evictionPressureTransitionPeriod: 30s
imageGCHighThresholdPercent: 90
imageGCLowThresholdPercent: 80
rotateCertificates: true
serverTLSBootstrap: true
tlsMinVersion: %s
tlsCipherSuites: [%s]
`

// hardenedKubelet is what --hardened adds (the k3s hardening guide's kubelet settings):
// the runtime's default seccomp profile for every container, a PID limit per pod, idle
// streaming connections closed after 5 minutes. protectKernelDefaults is set above.
const hardenedKubelet = `seccompDefault: true
podPidsLimit: 4096
streamingConnectionIdleTimeout: 5m
`

// kubelet is the kubelet component with its arguments, parsed when the node is prepared.
type kubelet struct {
	component component.Component
	flags     *kubeletoptions.KubeletFlags
	argv      []string
	// scratch is the user's arguments over the kubelet's defaults: the ports, the health
	// endpoint and the cgroup root k1s prepares come from it (the file k1s writes sets the
	// same defaults).
	scratch *kubeletconfig.KubeletConfiguration
}

func (k *kubelet) cgroupRoot() string {
	if k.scratch.CgroupRoot == "" {
		return "/"
	}
	return k.scratch.CgroupRoot
}

// kubeletConfig is the content of the KubeletConfiguration file.
func (a *Agent) kubeletConfig() string {
	cfg := a.cfg
	out := fmt.Sprintf(kubeletConfigTemplate, cfg.NodeIP, cfg.files.ClientCA(), cfg.cgroupDriver(),
		a.cluster.ClusterDNS, a.cluster.ClusterDomain, cfg.ResolvConf, "unix://"+layout.ContainerdSocket,
		cfg.files.PodLogsDir(), cfg.files.KubeletVolumePluginDir(), cfg.Hardened, pki.TLSMinVersion, strings.Join(pki.TLSCipherSuites, ", "))
	if cfg.Hardened {
		out += hardenedKubelet
	}
	return out
}

// newKubelet parses the kubelet's flags now (a bad --kubelet-arg stops k1s before anything
// runs) and returns the kubelet, which writes and loads its config file when it starts (it
// needs the cluster's settings) and runs under k1s's context, as its cobra command would but
// without the command's signal handler.
func (a *Agent) newKubelet(argv []string) (*kubelet, error) {
	k := &kubelet{flags: kubeletoptions.NewKubeletFlags(), argv: argv}
	k.flags.KubeConfig = a.cfg.files.KubeletKubeconfig()
	k.flags.HostnameOverride = a.cfg.NodeName
	k.flags.NodeIP = a.cfg.NodeIP.String()
	k.flags.RootDirectory = a.cfg.files.KubeletDir()
	k.flags.CertDirectory = a.cfg.files.KubeletCertDir()
	var err error
	if k.scratch, err = kubeletoptions.NewKubeletConfiguration(); err != nil {
		return nil, err
	}
	// The defaults k1s's file sets where the kubelet's own differ.
	k.scratch.HealthzBindAddress = "127.0.0.1"
	if err := parseKubeletFlags(k.flags, k.scratch, argv); err != nil {
		return nil, err
	}
	if ip := net.ParseIP(k.scratch.HealthzBindAddress); ip == nil {
		return nil, fmt.Errorf("--kubelet-arg healthz-bind-address %q is not an IP address", k.scratch.HealthzBindAddress)
	}
	configFile := a.cfg.files.KubeletConfig()
	run := func(ctx context.Context) error {
		ctx = klog.NewContext(ctx, klog.Background().WithValues("component", "kubelet"))
		if err := fileutil.WriteAtomic(configFile, []byte(a.kubeletConfig()), 0o600); err != nil {
			return err
		}
		loader, err := configfiles.NewFsLoader(&utilfs.DefaultFs{}, configFile)
		if err != nil {
			return fmt.Errorf("loading kubelet config %s: %w", configFile, err)
		}
		kc, err := loader.Load(ctx)
		if err != nil {
			return fmt.Errorf("loading kubelet config %s: %w", configFile, err)
		}
		if kc.EvictionHard == nil {
			kc.EvictionHard = eviction.DefaultEvictionHard
		}
		// The user's arguments win over the file (the kubelet's own flag precedence).
		flags := *k.flags
		if err := parseKubeletFlags(&flags, kc, k.argv); err != nil {
			return err
		}
		if err := kubeletoptions.ValidateKubeletFlags(&flags); err != nil {
			return fmt.Errorf("--kubelet-arg: %w", err)
		}
		if err := utilfeature.DefaultMutableFeatureGate.SetFromMap(kc.FeatureGates); err != nil {
			return fmt.Errorf("kubelet feature gates: %w", err)
		}
		if err := kubeletconfigvalidation.ValidateKubeletConfiguration(kc, utilfeature.DefaultFeatureGate); err != nil {
			return fmt.Errorf("invalid kubelet configuration: %w", err)
		}
		server := &kubeletoptions.KubeletServer{KubeletFlags: flags, KubeletConfiguration: *kc}
		deps, err := kubeletapp.UnsecuredDependencies(ctx, server, utilfeature.DefaultFeatureGate)
		if err != nil {
			return err
		}
		if err := usePodSources(ctx, server, deps); err != nil {
			return err
		}
		return kubeletapp.Run(ctx, server, deps, utilfeature.DefaultFeatureGate)
	}
	health := "http://" + net.JoinHostPort(loopbackFor(k.scratch.HealthzBindAddress), strconv.Itoa(int(k.scratch.HealthzPort))) + "/healthz"
	k.component = component.NewFunc("kubelet", run, component.HTTPReady(health, false))
	return k, nil
}

// loopbackFor is the address this host reaches a listener bound to host at.
func loopbackFor(host string) string {
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		return "127.0.0.1"
	}
	return host
}

func parseKubeletFlags(flags *kubeletoptions.KubeletFlags, kc *kubeletconfig.KubeletConfiguration, argv []string) error {
	fs := pflag.NewFlagSet("kubelet-arg", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	flags.AddFlags(fs)
	kubeletoptions.AddKubeletConfigFlags(fs, kc)
	if err := fs.Parse(argv); err != nil {
		return fmt.Errorf("--kubelet-arg: %w", err)
	}
	return nil
}
