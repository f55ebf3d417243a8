package server

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/k1s-io/k1s/internal/args"
	"github.com/k1s-io/k1s/internal/bootstrapdata"
	"github.com/k1s-io/k1s/internal/component"
	"github.com/k1s-io/k1s/internal/datadir"
	"github.com/k1s-io/k1s/internal/etcd"
	"github.com/k1s-io/k1s/internal/fileutil"
	"github.com/k1s-io/k1s/internal/join"
	"github.com/k1s-io/k1s/internal/kubeclient"
	"github.com/k1s-io/k1s/internal/layout"
	"github.com/k1s-io/k1s/internal/network"
	"github.com/k1s-io/k1s/internal/pki"
)

// Server is a control plane that is ready to start: its host checked, its data directory
// locked, its PKI on disk and its components built.
type Server struct {
	cfg        *completedConfig
	lock       *datadir.Lock
	components []component.Component
	pkiSpec    pki.ControlPlaneSpec
	// adminPending says that the admin certificate was issued again and its binding or
	// kubeconfig is still to be written (the certificate renewal's own state).
	adminPending bool
	// PKI is where the control plane's credentials are.
	PKI *pki.ControlPlane
	// NodeToken is the server's default join token (the node-token file); the server's own
	// node joins with it like any other.
	NodeToken join.Token
	// ServerToken joins other servers (server/token); only on a server of a cluster that can
	// grow.
	ServerToken join.Token
}

// Prepare turns a completed Config into a Server. The order matters for bad input: everything
// that can be checked without writing is checked first (flags of every component included),
// then the data directory is locked, and only then is anything written to it.
// A server that joins a cluster (--server) reads the cluster's bootstrap data first, and
// adds itself to etcd as a learner once its certificates exist; ctx bounds those waits.
func Prepare(ctx context.Context, completed CompletedConfig) (*Server, error) {
	cfg := completed.completedConfig
	if cfg == nil {
		return nil, errors.New("server: Prepare needs a config from Complete")
	}
	if err := planCluster(ctx, cfg); err != nil {
		return nil, err
	}
	argv, err := buildArgs(cfg)
	if err != nil {
		return nil, err
	}
	etcdServer, err := newEtcd(cfg, "")
	if err != nil {
		return nil, err
	}
	if remote, _ := url.Parse(etcdServer.RemoteClientURL()); cfg.clustered && remote != nil {
		if ip := net.ParseIP(remote.Hostname()); ip != nil && ip.IsLoopback() {
			return nil, fmt.Errorf("--etcd-arg listen-client-urls serves etcd on loopback only, where the other servers cannot reach it: add https://%s:%d", cfg.AdvertiseAddress, layout.EtcdClientPort)
		}
	}
	etcdURL := etcdServer.ClientURL()
	argv.apiserver = append(argv.apiserver, "--etcd-servers="+etcdURL.String())

	// The admin client reads its credentials when first used, after the PKI exists.
	admin := kubeclient.NewLazy(cfg.files.SupervisorKubeconfig())
	// The apiserver answers at once, not at its timeout, while etcd has no quorum (etcdServer
	// may be replaced below by a joining server's).
	apiServer, err := newAPIServer(argv.apiserver, admin, func() string { return etcdServer.QuorumLost() })
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
	clusterControllers, err := newControllers(cfg, admin, etcdURL.String())
	if err != nil {
		return nil, err
	}

	lock, err := datadir.Acquire(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, lock: lock}
	if err := s.prepareHost(argv, etcdServer); err != nil {
		lock.Release()
		return nil, err
	}
	if cfg.join != nil {
		if etcdServer, err = s.addLearner(ctx); err == nil {
			err = datadir.RecordArgs(cfg.dir, layout.PartServer, "etcd", etcdServer.Args())
		}
		if err != nil {
			lock.Release()
			return nil, err
		}
	}
	// The controllers come after the RBAC and bootstrap data nodes join with, so that they
	// stop first and release their lease while the apiserver still serves.
	// Secrets encryption is checked against etcd before the apiserver starts, and Secrets it
	// must rewrite are rewritten once the apiserver serves.
	secretsEnc := newSecretsEncryption(cfg, etcdServer, argv.apiserver)
	s.components = []component.Component{etcdServer}
	if cfg.clustered {
		membership, err := s.newMembership(etcdServer)
		if err != nil {
			lock.Release()
			return nil, err
		}
		s.components = append(s.components, membership...)
	}
	if !cfg.EtcdDisableSnapshots {
		s.components = append(s.components, etcd.NewSnapshotter(etcdServer, etcd.SnapshotSchedule{
			Dir: cfg.EtcdSnapshotDir, Node: cfg.NodeName, Spec: cfg.EtcdSnapshotCron, Schedule: cfg.snapshotSchedule,
			Retention: cfg.EtcdSnapshotRetention, Compress: cfg.EtcdSnapshotCompress, Log: cfg.Log,
		}))
	}
	// The controller-manager and the scheduler need only the apiserver, and nothing after
	// them needs them ready: they start while k1s writes what nodes join with, which is mostly
	// waiting on the apiserver. Their place in the order stays, and so does their stop.
	s.components = append(s.components, secretsEnc.check(), apiServer, secretsEnc.rewrite(admin),
		component.Background(controllerManager), component.Background(scheduler), s.newBootstrap(admin), newRBAC(admin))
	if cfg.clustered {
		s.components = append(s.components, s.newClusterBootstrap(admin, etcdServer))
	}
	s.components = append(s.components, clusterControllers, s.newCertificateRenewal(admin),
		component.Await(controllerManager), component.Await(scheduler))
	return s, nil
}

// newEtcd is the embedded etcd of the server's configuration: the one Prepare starts and the
// one a restore writes the data of. initialCluster is the cluster a joining member starts in.
func newEtcd(cfg *completedConfig, initialCluster string) (*etcd.Server, error) {
	return etcd.New(etcd.Config{
		Name:       cfg.NodeName,
		DataDir:    cfg.files.EtcdDataDir(),
		ClientPort: layout.EtcdClientPort,
		HTTPPort:   layout.EtcdHTTPPort,
		PeerURL:    fmt.Sprintf("http://127.0.0.1:%d", layout.EtcdPeerPort),
		CAFile:     cfg.files.EtcdCA().Cert,
		CertFile:   cfg.files.EtcdServing().Cert,
		KeyFile:    cfg.files.EtcdServing().Key,
		Peer:       cfg.etcdPeer(initialCluster),
		Tombstone:  cfg.files.EtcdTombstone(),
		ExtraArgs:  cfg.ExtraEtcdArgs,
		Log:        cfg.Log,
	})
}

// RestoreSnapshot replaces the etcd data of a stopped server with the snapshot file's (see
// etcd.Server.Restore) and returns where the previous data was moved. It refuses while
// another k1s holds the data directory. aside is "" when there was no data to move. On a
// machine without the cluster's certificates (a new one), the server token opens them from
// the snapshot's sealed bootstrap data.
func RestoreSnapshot(ctx context.Context, completed CompletedConfig, file string, token join.Token) (aside string, err error) {
	cfg, etcdServer, lock, err := stoppedEtcd(completed)
	if err != nil {
		return "", err
	}
	defer lock.Release()
	newMachine := !exists(cfg.files.ServerCA().Key)
	if newMachine && token.ID == "" {
		return "", fmt.Errorf("%s has none of the cluster's certificates: restoring on a new machine needs the server token (--token, the old server's <data-dir>/server/token) to open them from the snapshot", cfg.DataDir)
	}
	aside = cfg.files.EtcdDataDirAside(time.Now().UTC().Format("20060102T150405Z"))
	moved, err := etcdServer.Restore(etcd.RestoreConfig{Snapshot: file, Staging: cfg.files.EtcdRestoreStaging(), Aside: aside})
	if err != nil {
		return "", err
	}
	if !moved {
		aside = ""
	}
	if newMachine {
		if err := restoreBootstrapData(ctx, cfg, etcdServer, token); err != nil {
			// Without the certificates the restored data is of no use here: put back what
			// was there before.
			if rerr := os.RemoveAll(cfg.files.EtcdDataDir()); rerr == nil && aside != "" {
				rerr = os.Rename(aside, cfg.files.EtcdDataDir())
				if rerr != nil {
					return aside, fmt.Errorf("%w; and putting the previous etcd data back from %s: %v", err, aside, rerr)
				}
			}
			return "", err
		}
	}
	return aside, nil
}

// restoreBootstrapData writes the cluster's certificates, keys and encryption configuration
// from the restored etcd's sealed bootstrap data, opened with the server token.
func restoreBootstrapData(ctx context.Context, cfg *completedConfig, e *etcd.Server, token join.Token) error {
	sealed, err := e.Peek(ctx, etcd.BootstrapKey)
	if err != nil {
		return fmt.Errorf("reading the restored etcd: %w", err)
	}
	if sealed == nil {
		return errors.New("the snapshot holds no bootstrap data (it was taken on a server without --cluster-init): restore it on the data directory it came from, which has the cluster's certificates")
	}
	bundle, err := bootstrapdata.Open(sealed, token.Secret)
	if errors.Is(err, bootstrapdata.ErrWrongSecret) {
		return errors.New("the snapshot's bootstrap data does not open with this token: give the server token of the cluster the snapshot was taken of")
	}
	if err != nil {
		return err
	}
	return writeBootstrapData(cfg.files, bundle, token)
}

// ResetCluster makes the stopped server's etcd a one-member cluster with its data (quorum-loss
// recovery): etcd starts once with --force-new-cluster and stops. It refuses while another k1s
// holds the data directory.
func ResetCluster(ctx context.Context, completed CompletedConfig) error {
	cfg, etcdServer, lock, err := stoppedEtcd(completed)
	if err != nil {
		return err
	}
	defer lock.Release()
	if exists(cfg.files.EtcdTombstone()) {
		return etcd.ErrRemoved(filepath.Dir(cfg.files.EtcdDataDir()))
	}
	return etcdServer.ForceNewCluster(ctx)
}

// stoppedEtcd is the etcd of a stopped server, for a command that works on its data, with
// the data directory locked (so that it refuses while k1s runs). The caller releases the lock.
func stoppedEtcd(completed CompletedConfig) (*completedConfig, *etcd.Server, *datadir.Lock, error) {
	cfg := completed.completedConfig
	if cfg == nil {
		return nil, nil, nil, errors.New("server: a stopped server's etcd needs a config from Complete")
	}
	e, err := newEtcd(cfg, "")
	if err != nil {
		return nil, nil, nil, err
	}
	lock, err := datadir.Acquire(cfg.DataDir)
	if err != nil {
		return nil, nil, nil, err
	}
	return cfg, e, lock, nil
}

// prepareHost checks the ports and writes the PKI, the join token and the policies.
func (s *Server) prepareHost(argv *componentArgs, e *etcd.Server) error {
	cfg := s.cfg
	etcdURL := e.ClientURL()
	ports := []network.ListenPort{
		{Host: cfg.BindAddress.String(), Port: strconv.Itoa(cfg.HTTPSPort), Owner: "kube-apiserver", Flag: "--https-listen-port"},
		{Host: etcdURL.Hostname(), Port: etcdURL.Port(), Owner: "etcd client", Flag: "--etcd-arg listen-client-urls=…"},
		{Host: argv.cmHost, Port: argv.cmPort, Owner: "kube-controller-manager", Flag: "--kube-controller-manager-arg secure-port=…"},
		{Host: argv.schedulerHost, Port: argv.schedulerPort, Owner: "kube-scheduler", Flag: "--kube-scheduler-arg secure-port=…"},
	}
	if !slices.Contains(cfg.Disable, "metrics-server") {
		ports = append(ports, network.ListenPort{Host: cfg.NodeIP.String(), Port: strconv.Itoa(cfg.MetricsServerPort), Owner: "metrics-server", Flag: "--metrics-server-port (or --disable metrics-server)"})
	}
	if u := e.HTTPListenURL(); u != nil {
		ports = append(ports, network.ListenPort{Host: u.Hostname(), Port: u.Port(), Owner: "etcd HTTP endpoints", Flag: "--etcd-arg listen-client-http-urls=…"})
	}
	if u := e.PeerListenURL(); u != nil {
		ports = append(ports, network.ListenPort{Host: u.Hostname(), Port: u.Port(), Owner: "etcd peer", Flag: "--etcd-arg listen-peer-urls=…"})
	}
	if err := network.CheckPortsFree(ports); err != nil {
		return err
	}

	ips, names := cfg.apiServerSANs()
	s.pkiSpec = pki.ControlPlaneSpec{
		Files:                      cfg.files,
		APIServerIPs:               ips,
		APIServerNames:             names,
		APIServerURL:               cfg.localAPIServerURL(),
		ServiceAccountKeyRetention: serviceAccountKeyRetention(argv.apiserver),
	}
	if cfg.clustered {
		s.pkiSpec.EtcdPeerIPs = []net.IP{cfg.AdvertiseAddress}
	}
	if err := s.writeJoinData(); err != nil {
		return err
	}
	cp, err := s.ensurePKI(true)
	if err != nil {
		return fmt.Errorf("preparing certificates in %s: %w", cfg.files.TLSDir(), err)
	}
	s.PKI = cp
	if s.NodeToken, err = join.EnsureNodeTokenFile(cfg.files.NodeToken(), cp.ServerCA.Cert); err != nil {
		return err
	}
	if cfg.clustered {
		if s.ServerToken, err = join.EnsureNodeTokenFile(cfg.files.ServerToken(), cp.ServerCA.Cert); err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(cfg.files.EtcdClustered()), 0o700); err != nil {
			return err
		}
		if err := fileutil.WriteAtomic(cfg.files.EtcdClustered(), []byte("etcd listens for peers at every start\n"), 0o600); err != nil {
			return err
		}
	}
	if err := fileutil.WriteAtomic(cfg.files.AuthenticationConfig(), join.AuthenticationConfig(), 0o600); err != nil {
		return err
	}
	if err := cfg.writePolicies(); err != nil {
		return err
	}
	for name, argv := range map[string][]string{"kube-apiserver": argv.apiserver, "kube-controller-manager": argv.controllerManager,
		"kube-scheduler": argv.scheduler, "etcd": e.Args()} {
		if err := datadir.RecordArgs(cfg.dir, layout.PartServer, name, argv); err != nil {
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

// Clustered says whether the server's etcd is one of a cluster that can grow (--cluster-init,
// joined, or either before).
func (s *Server) Clustered() bool { return s.cfg.clustered }

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
func buildArgs(cfg *completedConfig) (*componentArgs, error) {
	f := cfg.files
	apiserver := map[string]string{
		"advertise-address":             cfg.AdvertiseAddress.String(),
		"allow-privileged":              "true",
		"admission-control-config-file": f.AdmissionConfig(),
		"api-audiences":                 ServiceAccountIssuer,
		"audit-log-path":                f.AuditLog(),
		"audit-policy-file":             cfg.auditPolicyFile(),
		"authentication-config":         f.AuthenticationConfig(),
		"authorization-mode":            "Node,RBAC",
		"bind-address":                  cfg.BindAddress.String(),
		"secure-port":                   strconv.Itoa(cfg.HTTPSPort),
		"cert-dir":                      f.APIServerCertDir(),
		"enable-admission-plugins":      "NodeRestriction",
		// The aggregator dials an APIService's endpoints, not its cluster IP: the apiserver
		// runs in the host network, where cluster IPs route only through a local kube-proxy,
		// which a --disable-agent server lacks.
		"enable-aggregator-routing":        "true",
		"enable-bootstrap-token-auth":      "true",
		"etcd-cafile":                      f.EtcdCA().Cert,
		"etcd-certfile":                    f.EtcdAPIServerClient().Cert,
		"etcd-keyfile":                     f.EtcdAPIServerClient().Key,
		"kubelet-certificate-authority":    f.KubeletCABundle(),
		"kubelet-client-certificate":       f.APIServerKubeletClient().Cert,
		"kubelet-client-key":               f.APIServerKubeletClient().Key,
		"kubelet-preferred-address-types":  "InternalIP,ExternalIP,Hostname",
		"profiling":                        "false",
		"proxy-client-cert-file":           f.AuthProxyClient().Cert,
		"proxy-client-key-file":            f.AuthProxyClient().Key,
		"service-account-issuer":           ServiceAccountIssuer,
		"service-account-key-file":         f.ServiceAccountVerifyKeys(),
		"service-account-signing-key-file": f.ServiceAccountKey(),
		"service-cluster-ip-range":         cfg.ServiceCIDR.String(),
		"service-node-port-range":          "30000-32767",
		// On stop the apiserver ends its watches itself instead of waiting for their clients:
		// the in-process kubelet never closes its own, so the HTTP server's drain (bounded
		// by request-timeout, a minute) and then etcd's would hold k1s for seconds.
		"shutdown-watch-termination-grace-period": "1s",
		"storage-backend":                         "etcd3",
		"tls-cert-file":                           f.APIServerServing().Cert,
		"tls-cipher-suites":                       strings.Join(pki.TLSCipherSuites, ","),
		"tls-min-version":                         pki.TLSMinVersion,
		"tls-private-key-file":                    f.APIServerServing().Key,
	}
	maps.Copy(apiserver, auditLogArgs)
	maps.Copy(apiserver, cfg.clientAuthDefaults())
	if cfg.encryptionEnabled() {
		apiserver["encryption-provider-config"] = f.EncryptionConfig()
		apiserver["encryption-provider-config-automatic-reload"] = "true"
	}
	controllerManager := map[string]string{
		"allocate-node-cidrs":       "true",
		"authentication-kubeconfig": f.ControllerManagerKubeconfig(),
		"authorization-kubeconfig":  f.ControllerManagerKubeconfig(),
		"bind-address":              "127.0.0.1",
		"cluster-cidr":              cfg.ClusterCIDR.String(),
		"cluster-signing-kube-apiserver-client-cert-file": f.ClientCA().Cert,
		"cluster-signing-kube-apiserver-client-key-file":  f.ClientCA().Key,
		"cluster-signing-kubelet-client-cert-file":        f.ClientCA().Cert,
		"cluster-signing-kubelet-client-key-file":         f.ClientCA().Key,
		// Kubelets' serving certificates come from their own CA, which only the apiserver and
		// metrics-server trust: a node's certificate must never pass for the API server's.
		"cluster-signing-kubelet-serving-cert-file": f.KubeletServingCA().Cert,
		"cluster-signing-kubelet-serving-key-file":  f.KubeletServingCA().Key,
		"cluster-signing-legacy-unknown-cert-file":  f.ServerCA().Cert,
		"cluster-signing-legacy-unknown-key-file":   f.ServerCA().Key,
		"configure-cloud-routes":                    "false",
		// The ValidatingAdmissionPolicy status controller only writes type-checking warnings
		// into policies' status, and holds a 7 MB schema resolver to do it; the apiserver
		// still compiles and enforces every policy.
		"controllers": "*,bootstrapsigner,tokencleaner,-validatingadmissionpolicy-status-controller",
		// FlexVolume drivers (for attach/detach) under the data directory, not /usr/libexec.
		"flex-volume-plugin-dir": f.VolumePluginDir(),
		// Per-controller credentials cost two API calls per controller at start; with the
		// default 20 QPS that alone delays the node's pod CIDR by ~5 s.
		"kube-api-burst": "200",
		"kube-api-qps":   "100",
		"kubeconfig":     f.ControllerManagerKubeconfig(),
		// A single server runs without leader election (set below for a cluster that can
		// grow): the upstream identity has a random suffix, so with leader election a
		// restarted sole server would wait out its own lease (15 s) before it controls.
		"leader-elect":                     "false",
		"node-cidr-mask-size":              "24",
		"profiling":                        "false",
		"root-ca-file":                     f.ServerCA().Cert,
		"secure-port":                      strconv.Itoa(layout.ControllerManagerPort),
		"service-account-private-key-file": f.ServiceAccountKey(),
		"service-cluster-ip-range":         cfg.ServiceCIDR.String(),
		"tls-cert-file":                    f.ControllerManagerServing().Cert,
		"tls-private-key-file":             f.ControllerManagerServing().Key,
		"use-service-account-credentials":  "true",
	}
	scheduler := map[string]string{
		"authentication-kubeconfig": f.SchedulerKubeconfig(),
		"authorization-kubeconfig":  f.SchedulerKubeconfig(),
		"bind-address":              "127.0.0.1",
		"kubeconfig":                f.SchedulerKubeconfig(),
		"leader-elect":              "false",
		"profiling":                 "false",
		"secure-port":               strconv.Itoa(layout.SchedulerPort),
		"tls-cert-file":             f.SchedulerServing().Cert,
		"tls-private-key-file":      f.SchedulerServing().Key,
	}
	if cfg.clustered {
		controllerManager["leader-elect"] = "true"
		scheduler["leader-elect"] = "true"
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

// defaultServiceAccountKeyRetention is how long a rotated-out service-account key verifies
// tokens when the apiserver caps no token's lifetime: a year, the longest lifetime a token
// can be given in practice (an unbounded TokenRequest aside).
const defaultServiceAccountKeyRetention = 365 * 24 * time.Hour

// serviceAccountKeyRetention is how long a token signed with a rotated-out key can still be
// valid: the apiserver's --service-account-max-token-expiration when set, unless it extends
// the pods' tokens (the default outside --hardened), which then live a year whatever the cap.
// Legacy token Secrets never expire: they outlive any retention.
func serviceAccountKeyRetention(apiserver []string) time.Duration {
	retention := defaultServiceAccountKeyRetention
	if v, ok := args.Value(apiserver, "service-account-max-token-expiration"); ok {
		if d, err := time.ParseDuration(v); err == nil && d > 0 {
			retention = d
		}
	}
	if v, _ := args.Value(apiserver, "service-account-extend-token-expiration"); v != "false" {
		retention = max(retention, defaultServiceAccountKeyRetention)
	}
	return retention
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

// clientAuthDefaults are k1s's client-certificate flags for the apiserver (pki.ClientAuthArgs).
func (c *completedConfig) clientAuthDefaults() map[string]string {
	return pki.ClientAuthArgs(c.files.ClientCA().Cert, c.files.RequestHeaderCA().Cert)
}

// apiserverClientAuth is how this server's apiserver verifies client certificates, the user's
// --kube-apiserver-arg included: the extension servers k1s runs must trust the same CAs.
func (c *completedConfig) apiserverClientAuth() (map[string]string, error) {
	auth, err := args.Effective(c.clientAuthDefaults(), c.ExtraAPIServerArgs)
	if err != nil {
		return nil, fmt.Errorf("--kube-apiserver-arg: %w", err)
	}
	return auth, nil
}
