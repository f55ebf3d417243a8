package agent

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

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
)

// kubeletConfigTemplate is the KubeletConfiguration k1s writes; fmt verbs are filled from
// Config. Settings follow the field notes: webhook authn/authz, no anonymous access, no
// read-only port, relaxed eviction for small disks, system images never garbage collected
// (they are pinned in containerd), and no kernel tunables forced.
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
tlsCertFile: %q
tlsPrivateKeyFile: %q
cgroupDriver: %s
failCgroupV1: false
clusterDNS: [%q]
clusterDomain: %q
resolvConf: %q
containerRuntimeEndpoint: %q
podLogsDir: %q
serializeImagePulls: false
protectKernelDefaults: false
evictionHard:
  memory.available: 100Mi
  nodefs.available: 5%%
  imagefs.available: 5%%
evictionPressureTransitionPeriod: 30s
imageGCHighThresholdPercent: 90
imageGCLowThresholdPercent: 80
rotateCertificates: false
serverTLSBootstrap: false
`

// kubeletConfig is the content of the KubeletConfiguration file.
func (a *Agent) kubeletConfig() string {
	cfg := a.cfg
	return fmt.Sprintf(kubeletConfigTemplate, cfg.NodeIP, a.node.ClientCAFile,
		a.node.KubeletServing.CertFile, a.node.KubeletServing.KeyFile, cfg.cgroupDriver(),
		cfg.ClusterDNS, cfg.ClusterDomain, cfg.ResolvConf, "unix://"+cfg.containerdSocket(),
		filepath.Join(cfg.agentDir(), "pod-logs"))
}

// newKubelet parses the kubelet's flags now (a bad --kubelet-arg stops k1s before anything
// runs) and returns the component that loads the config file and runs the kubelet under
// k1s's context, as its cobra command would but without the command's signal handler.
func (a *Agent) newKubelet(configFile string) (component.Component, error) {
	flags := kubeletoptions.NewKubeletFlags()
	flags.KubeConfig = a.node.KubeletKubeconfig
	flags.KubeletConfigFile = configFile
	flags.HostnameOverride = a.cfg.NodeName
	flags.NodeIP = a.cfg.NodeIP.String()
	flags.RootDirectory = filepath.Join(a.cfg.agentDir(), "kubelet")
	flags.CertDirectory = filepath.Join(a.cfg.agentDir(), "kubelet", "pki")
	argv := append([]string(nil), a.kubeletArgs...)
	// The user's --kubelet-arg are parsed twice: once now onto a scratch configuration to
	// reject bad ones early, and again after the config file is loaded, so that they win
	// over it (the kubelet's own flag precedence).
	scratch, err := kubeletoptions.NewKubeletConfiguration()
	if err != nil {
		return nil, err
	}
	if err := parseKubeletFlags(flags, scratch, argv); err != nil {
		return nil, err
	}
	run := func(ctx context.Context) error {
		ctx = klog.NewContext(ctx, klog.Background().WithValues("component", "kubelet"))
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
		if err := parseKubeletFlags(flags, kc, argv); err != nil {
			return err
		}
		if err := kubeletoptions.ValidateKubeletFlags(flags); err != nil {
			return fmt.Errorf("--kubelet-arg: %w", err)
		}
		if err := utilfeature.DefaultMutableFeatureGate.SetFromMap(kc.FeatureGates); err != nil {
			return fmt.Errorf("kubelet feature gates: %w", err)
		}
		if err := kubeletconfigvalidation.ValidateKubeletConfiguration(kc, utilfeature.DefaultFeatureGate); err != nil {
			return fmt.Errorf("invalid kubelet configuration: %w", err)
		}
		server := &kubeletoptions.KubeletServer{KubeletFlags: *flags, KubeletConfiguration: *kc}
		deps, err := kubeletapp.UnsecuredDependencies(ctx, server, utilfeature.DefaultFeatureGate)
		if err != nil {
			return err
		}
		return kubeletapp.Run(ctx, server, deps, utilfeature.DefaultFeatureGate)
	}
	return component.NewFunc("kubelet", run, component.HTTPReady("http://127.0.0.1:10248/healthz", false)), nil
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
