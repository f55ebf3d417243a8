package server

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/k1s-io/k1s/internal/args"
	"github.com/k1s-io/k1s/internal/component"
	"github.com/k1s-io/k1s/internal/datadir"
	"github.com/k1s-io/k1s/internal/etcd"
	"github.com/k1s-io/k1s/internal/network"
	"github.com/k1s-io/k1s/internal/pki"
)

// Server is a control plane that is ready to start: its host checked, its data directory
// locked, its PKI on disk and its components built.
type Server struct {
	cfg        *Config
	lock       *datadir.Lock
	components []component.Component
	pkiSpec    pki.ControlPlaneSpec
	// PKI is where the control plane's credentials are.
	PKI *pki.ControlPlane
	// NodeToken is the server's default join token (the node-token file); the server's own
	// node joins with it like any other.
	NodeToken pki.JoinToken
}

// Prepare turns a completed Config into a Server. The order matters for bad input: everything
// that can be checked without writing is checked first (flags of every component included),
// then the data directory is locked, and only then is anything written to it.
func Prepare(cfg *Config) (*Server, error) {
	argv, err := buildArgs(cfg)
	if err != nil {
		return nil, err
	}
	etcdServer, err := etcd.New(etcd.Config{
		Name:       cfg.NodeName,
		DataDir:    cfg.etcdDir(),
		ClientPort: DefaultEtcdClientPort,
		PeerURL:    fmt.Sprintf("http://127.0.0.1:%d", DefaultEtcdPeerPort),
		CAFile:     cfg.tlsDir() + "/etcd/server-ca.crt",
		CertFile:   cfg.tlsDir() + "/etcd/server-client.crt",
		KeyFile:    cfg.tlsDir() + "/etcd/server-client.key",
		ExtraArgs:  cfg.ExtraEtcdArgs,
		Log:        cfg.Log,
	})
	if err != nil {
		return nil, err
	}
	etcdURL := etcdServer.ClientURL()
	argv.apiserver = append(argv.apiserver, "--etcd-servers="+etcdURL.String())

	// The admin client reads its credentials when first used, after the PKI exists.
	admin := &adminClient{kubeconfig: cfg.SupervisorKubeconfig()}
	apiServer, err := newAPIServer(argv.apiserver, admin)
	if err != nil {
		return nil, err
	}
	controllerManager, err := newControllerManager(argv.controllerManager, healthURL(argv.cmHost, argv.cmPort))
	if err != nil {
		return nil, err
	}
	scheduler, err := newScheduler(argv.scheduler, healthURL(argv.schedulerHost, argv.schedulerPort))
	if err != nil {
		return nil, err
	}
	addons, err := newAddons(cfg, admin)
	if err != nil {
		return nil, err
	}

	if err := datadir.EnsureWritable(cfg.DataDir); err != nil {
		return nil, err
	}
	lock, err := datadir.Acquire(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, lock: lock}
	if err := s.prepareHost(argv, etcdServer.Args(), etcdURL, etcdServer.PeerListenURL()); err != nil {
		lock.Release()
		return nil, err
	}
	// Nothing waits for the add-ons: nodes join without them.
	s.components = []component.Component{etcdServer, apiServer, controllerManager, scheduler, s.newBootstrap(admin),
		newRBAC(admin), newCSRApprover(admin), s.newCertificateRenewal(), component.Background(addons)}
	return s, nil
}

// prepareHost checks the ports and writes the PKI, the join token and the policies.
func (s *Server) prepareHost(argv *componentArgs, etcdArgs []string, etcdURL, etcdPeerURL *url.URL) error {
	cfg := s.cfg
	ports := []network.ListenPort{
		{Host: cfg.BindAddress.String(), Port: strconv.Itoa(cfg.HTTPSPort), Owner: "kube-apiserver", Flag: "--https-listen-port"},
		{Host: etcdURL.Hostname(), Port: etcdURL.Port(), Owner: "etcd client", Flag: "--etcd-arg listen-client-urls=…"},
		{Host: argv.cmHost, Port: argv.cmPort, Owner: "kube-controller-manager", Flag: "--kube-controller-manager-arg secure-port=…"},
		{Host: argv.schedulerHost, Port: argv.schedulerPort, Owner: "kube-scheduler", Flag: "--kube-scheduler-arg secure-port=…"},
	}
	if etcdPeerURL != nil {
		ports = append(ports, network.ListenPort{Host: etcdPeerURL.Hostname(), Port: etcdPeerURL.Port(), Owner: "etcd peer", Flag: "--etcd-arg listen-peer-urls=…"})
	}
	if err := network.CheckPortsFree(ports); err != nil {
		return err
	}

	ips, names := cfg.apiServerSANs()
	s.pkiSpec = pki.ControlPlaneSpec{
		Dir:            cfg.tlsDir(),
		CredDir:        cfg.credDir(),
		APIServerIPs:   ips,
		APIServerNames: names,
		APIServerURL:   cfg.localAPIServerURL(),
	}
	cp, err := s.ensurePKI()
	if err != nil {
		return fmt.Errorf("preparing certificates in %s: %w", cfg.tlsDir(), err)
	}
	s.PKI = cp
	if s.NodeToken, err = ensureNodeToken(cfg.NodeTokenFile(), cp.ServerCA); err != nil {
		return err
	}
	if err := pki.WriteFileAtomic(cfg.authenticationConfigFile(), authenticationConfig(), 0o600); err != nil {
		return err
	}
	if err := cfg.writePolicies(); err != nil {
		return err
	}
	if cfg.encryptionEnabled() {
		if err := ensureEncryptionConfig(cfg.EncryptionConfigFile()); err != nil {
			return fmt.Errorf("secrets encryption: %w", err)
		}
	}
	for name, argv := range map[string][]string{"kube-apiserver": argv.apiserver, "kube-controller-manager": argv.controllerManager,
		"kube-scheduler": argv.scheduler, "etcd": etcdArgs} {
		if err := datadir.RecordArgs(cfg.DataDir, "server", name, argv); err != nil {
			return err
		}
	}
	return nil
}

// writeAdminKubeconfig writes the admin kubeconfig (--write-kubeconfig). It is written once
// its RBAC binding exists, so that a kubeconfig on disk always works.
func (s *Server) writeAdminKubeconfig() error {
	cfg := s.cfg
	if err := pki.WriteKubeconfig(cfg.KubeconfigOutput, cfg.localAPIServerURL(), s.PKI.ServerCA.CertFile, s.PKI.Admin, true, cfg.KubeconfigMode); err != nil {
		return fmt.Errorf("writing the admin kubeconfig (--write-kubeconfig): %w", err)
	}
	return nil
}

// adminClient is a cluster-admin clientset built on first use.
type adminClient struct {
	kubeconfig string
	once       sync.Once
	config     *rest.Config
	client     kubernetes.Interface
	err        error
}

func (a *adminClient) get() (kubernetes.Interface, error) {
	a.once.Do(func() {
		cfg, err := clientcmd.BuildConfigFromFlags("", a.kubeconfig)
		if err != nil {
			a.err = fmt.Errorf("loading %s: %w", a.kubeconfig, err)
			return
		}
		cfg.UserAgent = "k1s"
		a.config = cfg
		a.client, a.err = kubernetes.NewForConfig(cfg)
	})
	return a.client, a.err
}

// LocalAPIServerURL is how processes on this host reach the apiserver.
func (s *Server) LocalAPIServerURL() string { return s.cfg.localAPIServerURL() }

// Components are the control plane's components in start order.
func (s *Server) Components() []component.Component { return s.components }

// Close releases the data directory.
func (s *Server) Close() { s.lock.Release() }

// componentArgs are the upstream components' command lines.
type componentArgs struct {
	apiserver, controllerManager, scheduler []string
	cmHost, cmPort                          string
	schedulerHost, schedulerPort            string
}

// buildArgs merges k1s's defaults for each component with the user's pass-through arguments.
// Certificate paths are fixed by the data directory; the files are created later.
func buildArgs(cfg *Config) (*componentArgs, error) {
	tls, cred := cfg.tlsDir(), cfg.credDir()
	apiserver := map[string]string{
		"advertise-address":                  cfg.AdvertiseAddress.String(),
		"allow-privileged":                   "true",
		"admission-control-config-file":      cfg.admissionConfigFile(),
		"api-audiences":                      ServiceAccountIssuer,
		"audit-log-path":                     cfg.AuditLog(),
		"audit-policy-file":                  cfg.auditPolicyFile(),
		"authentication-config":              cfg.authenticationConfigFile(),
		"authorization-mode":                 "Node,RBAC",
		"bind-address":                       cfg.BindAddress.String(),
		"secure-port":                        strconv.Itoa(cfg.HTTPSPort),
		"cert-dir":                           tls + "/temporary-certs",
		"client-ca-file":                     tls + "/client-ca.crt",
		"enable-admission-plugins":           "NodeRestriction",
		"enable-bootstrap-token-auth":        "true",
		"etcd-cafile":                        tls + "/etcd/server-ca.crt",
		"etcd-certfile":                      tls + "/etcd/client.crt",
		"etcd-keyfile":                       tls + "/etcd/client.key",
		"kubelet-certificate-authority":      tls + "/server-ca.crt",
		"kubelet-client-certificate":         tls + "/client-kube-apiserver.crt",
		"kubelet-client-key":                 tls + "/client-kube-apiserver.key",
		"kubelet-preferred-address-types":    "InternalIP,ExternalIP,Hostname",
		"profiling":                          "false",
		"proxy-client-cert-file":             tls + "/client-auth-proxy.crt",
		"proxy-client-key-file":              tls + "/client-auth-proxy.key",
		"requestheader-allowed-names":        pki.AuthProxyUser,
		"requestheader-client-ca-file":       tls + "/request-header-ca.crt",
		"requestheader-extra-headers-prefix": "X-Remote-Extra-",
		"requestheader-group-headers":        "X-Remote-Group",
		"requestheader-username-headers":     "X-Remote-User",
		"service-account-issuer":             ServiceAccountIssuer,
		"service-account-key-file":           tls + "/service.key",
		"service-account-signing-key-file":   tls + "/service.key",
		"service-cluster-ip-range":           cfg.ServiceCIDR.String(),
		"service-node-port-range":            "30000-32767",
		"storage-backend":                    "etcd3",
		"tls-cert-file":                      tls + "/serving-kube-apiserver.crt",
		"tls-cipher-suites":                  strings.Join(pki.TLSCipherSuites, ","),
		"tls-min-version":                    pki.TLSMinVersion,
		"tls-private-key-file":               tls + "/serving-kube-apiserver.key",
	}
	for k, v := range auditLogArgs {
		apiserver[k] = v
	}
	if cfg.encryptionEnabled() {
		apiserver["encryption-provider-config"] = cfg.EncryptionConfigFile()
		apiserver["encryption-provider-config-automatic-reload"] = "true"
	}
	controllerManager := map[string]string{
		"allocate-node-cidrs":       "true",
		"authentication-kubeconfig": cred + "/controller.kubeconfig",
		"authorization-kubeconfig":  cred + "/controller.kubeconfig",
		"bind-address":              "127.0.0.1",
		"cluster-cidr":              cfg.ClusterCIDR.String(),
		"cluster-signing-kube-apiserver-client-cert-file": tls + "/client-ca.crt",
		"cluster-signing-kube-apiserver-client-key-file":  tls + "/client-ca.key",
		"cluster-signing-kubelet-client-cert-file":        tls + "/client-ca.crt",
		"cluster-signing-kubelet-client-key-file":         tls + "/client-ca.key",
		"cluster-signing-kubelet-serving-cert-file":       tls + "/server-ca.crt",
		"cluster-signing-kubelet-serving-key-file":        tls + "/server-ca.key",
		"cluster-signing-legacy-unknown-cert-file":        tls + "/server-ca.crt",
		"cluster-signing-legacy-unknown-key-file":         tls + "/server-ca.key",
		"configure-cloud-routes":                          "false",
		"controllers":                                     "*,bootstrapsigner,tokencleaner",
		// FlexVolume drivers (for attach/detach) under the data directory, not /usr/libexec.
		"flex-volume-plugin-dir": cfg.serverDir() + "/volume-plugins",
		// Per-controller credentials cost two API calls per controller at start; with the
		// default 20 QPS that alone delays the node's pod CIDR by ~5 s.
		"kube-api-burst":                   "200",
		"kube-api-qps":                     "100",
		"kubeconfig":                       cred + "/controller.kubeconfig",
		"leader-elect":                     "false",
		"node-cidr-mask-size":              "24",
		"profiling":                        "false",
		"root-ca-file":                     tls + "/server-ca.crt",
		"secure-port":                      strconv.Itoa(DefaultControllerManagerPort),
		"service-account-private-key-file": tls + "/service.key",
		"service-cluster-ip-range":         cfg.ServiceCIDR.String(),
		"use-service-account-credentials":  "true",
	}
	scheduler := map[string]string{
		"authentication-kubeconfig": cred + "/scheduler.kubeconfig",
		"authorization-kubeconfig":  cred + "/scheduler.kubeconfig",
		"bind-address":              "127.0.0.1",
		"kubeconfig":                cred + "/scheduler.kubeconfig",
		"leader-elect":              "false",
		"profiling":                 "false",
		"secure-port":               strconv.Itoa(DefaultSchedulerPort),
	}
	if cfg.Hardened {
		for k, v := range hardenedAPIServerArgs {
			apiserver[k] = v
		}
		for k, v := range hardenedControllerManagerArgs {
			controllerManager[k] = v
		}
	}
	out := &componentArgs{}
	var err error
	if out.apiserver, err = args.Merge(apiserver, cfg.ExtraAPIServerArgs); err != nil {
		return nil, fmt.Errorf("--kube-apiserver-arg: %w", err)
	}
	if out.controllerManager, err = args.Merge(controllerManager, cfg.ExtraControllerManagerArgs); err != nil {
		return nil, fmt.Errorf("--kube-controller-manager-arg: %w", err)
	}
	if out.scheduler, err = args.Merge(scheduler, cfg.ExtraSchedulerArgs); err != nil {
		return nil, fmt.Errorf("--kube-scheduler-arg: %w", err)
	}
	if _, ok := args.Value(out.apiserver, "etcd-servers"); ok {
		return nil, fmt.Errorf("--kube-apiserver-arg etcd-servers cannot be set: the apiserver uses the embedded etcd")
	}
	out.cmHost, out.cmPort = listenAddress(out.controllerManager)
	out.schedulerHost, out.schedulerPort = listenAddress(out.scheduler)
	return out, nil
}

// healthURL is where a component listening on host:port answers /healthz from this host.
func healthURL(host, port string) string {
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "https://" + net.JoinHostPort(host, port) + "/healthz"
}

// listenAddress is where a component with the generic secure-serving flags will listen.
func listenAddress(argv []string) (host, port string) {
	host, _ = args.Value(argv, "bind-address")
	port, _ = args.Value(argv, "secure-port")
	if ip := net.ParseIP(host); ip == nil || strings.TrimSpace(host) == "" {
		host = "0.0.0.0"
	}
	return host, port
}
