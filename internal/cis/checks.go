package cis

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// check is one benchmark recommendation. Its eval returns pass or fail as the recorded
// configuration meets it; for a manual check the runner shows fail as WARN.
type check struct {
	id, title string
	automated bool
	// needs is the component the check is about: when it does not run on this host the check
	// is INFO, and when its record is unreadable the check fails.
	needs string
	eval  func(*config) outcome
}

type outcome struct {
	status Status
	found  string
}

func pass(format string, a ...any) outcome { return outcome{Pass, fmt.Sprintf(format, a...)} }
func fail(format string, a ...any) outcome { return outcome{Fail, fmt.Sprintf(format, a...)} }
func warn(format string, a ...any) outcome { return outcome{Warn, fmt.Sprintf(format, a...)} }
func info(format string, a ...any) outcome { return outcome{Info, fmt.Sprintf(format, a...)} }
func unverified(format string, a ...any) outcome {
	return outcome{Unverified, fmt.Sprintf(format, a...)}
}

const (
	automated = true
	manual    = false
)

const (
	noManifests  = "no static pod manifests: components run in the k1s process"
	noCNIFiles   = "no CNI plugin installed from a pod: k1s writes its own CNI configuration (agent/etc/cni/net.d)"
	noKubeletSvc = "no kubelet service file: the kubelet runs in the k1s process"
)

// checks are the benchmark's recommendations that apply to k1s, in the benchmark's order.
// IDs and titles are CIS Kubernetes Benchmark v1.10's (1.2.30 and 4.2.14 are v1.11's), with
// k3s's self-assessment guide's automated/manual marks.
var checks = []check{
	// 1.1 Control Plane Node Configuration Files
	{"1.1.1", "Ensure that the API server pod specification file permissions are set to 600 or more restrictive", automated, "", always(info("%s", noManifests))},
	{"1.1.2", "Ensure that the API server pod specification file ownership is set to root:root", automated, "", always(info("%s", noManifests))},
	{"1.1.3", "Ensure that the controller manager pod specification file permissions are set to 600 or more restrictive", automated, "", always(info("%s", noManifests))},
	{"1.1.4", "Ensure that the controller manager pod specification file ownership is set to root:root", automated, "", always(info("%s", noManifests))},
	{"1.1.5", "Ensure that the scheduler pod specification file permissions are set to 600 or more restrictive", automated, "", always(info("%s", noManifests))},
	{"1.1.6", "Ensure that the scheduler pod specification file ownership is set to root:root", automated, "", always(info("%s", noManifests))},
	{"1.1.7", "Ensure that the etcd pod specification file permissions are set to 600 or more restrictive", automated, "", always(info("%s", noManifests))},
	{"1.1.8", "Ensure that the etcd pod specification file ownership is set to root:root", automated, "", always(info("%s", noManifests))},
	{"1.1.9", "Ensure that the Container Network Interface file permissions are set to 600 or more restrictive", automated, "", always(info("%s", noCNIFiles))},
	{"1.1.10", "Ensure that the Container Network Interface file ownership is set to root:root", automated, "", always(info("%s", noCNIFiles))},
	{"1.1.11", "Ensure that the etcd data directory permissions are set to 700 or more restrictive", manual, etcd, func(c *config) outcome {
		return c.permissions(c.etcdDataDir(), 0o700)
	}},
	{"1.1.12", "Ensure that the etcd data directory ownership is set to etcd:etcd", automated, etcd, etcdDataDirOwner},
	{"1.1.13", "Ensure that the admin.conf file permissions are set to 600 or more restrictive", automated, apiserver, func(c *config) outcome {
		return c.permissions(c.adminKubeconfigs(), 0o600)
	}},
	{"1.1.14", "Ensure that the admin.conf file ownership is set to root:root", automated, apiserver, func(c *config) outcome {
		return c.ownership(c.adminKubeconfigs())
	}},
	{"1.1.15", "Ensure that the scheduler.conf file permissions are set to 600 or more restrictive", automated, scheduler, func(c *config) outcome {
		return c.permissions(c.kubeconfigs(scheduler), 0o600)
	}},
	{"1.1.16", "Ensure that the scheduler.conf file ownership is set to root:root", automated, scheduler, func(c *config) outcome {
		return c.ownership(c.kubeconfigs(scheduler))
	}},
	{"1.1.17", "Ensure that the controller-manager.conf file permissions are set to 600 or more restrictive", automated, controllerManager, func(c *config) outcome {
		return c.permissions(c.kubeconfigs(controllerManager), 0o600)
	}},
	{"1.1.18", "Ensure that the controller-manager.conf file ownership is set to root:root", automated, controllerManager, func(c *config) outcome {
		return c.ownership(c.kubeconfigs(controllerManager))
	}},
	{"1.1.19", "Ensure that the Kubernetes PKI directory and file ownership is set to root:root", automated, apiserver, func(c *config) outcome {
		all, _, _, err := c.pkiFiles()
		if err != nil {
			return unverified("%v", err)
		}
		return c.ownership(fileSet{paths: all, noun: "PKI files and directories"})
	}},
	{"1.1.20", "Ensure that the Kubernetes PKI certificate file permissions are set to 600 or more restrictive", manual, apiserver, func(c *config) outcome {
		_, certs, _, err := c.pkiFiles()
		if err != nil {
			return unverified("%v", err)
		}
		return c.permissions(fileSet{paths: certs, noun: "certificate files"}, 0o600)
	}},
	{"1.1.21", "Ensure that the Kubernetes PKI key file permissions are set to 600", automated, apiserver, func(c *config) outcome {
		_, _, keys, err := c.pkiFiles()
		if err != nil {
			return unverified("%v", err)
		}
		return c.permissions(fileSet{paths: keys, noun: "key files"}, 0o600)
	}},

	// 1.2 API Server
	{"1.2.1", "Ensure that the --anonymous-auth argument is set to false", automated, apiserver, anonymousAuth},
	{"1.2.2", "Ensure that the --token-auth-file parameter is not set", automated, apiserver, unsetFlag(apiserver, "token-auth-file")},
	{"1.2.3", "Ensure that the --DenyServiceExternalIPs is set", manual, apiserver, listHas(apiserver, "enable-admission-plugins", "DenyServiceExternalIPs")},
	{"1.2.4", "Ensure that the --kubelet-client-certificate and --kubelet-client-key arguments are set as appropriate", automated, apiserver, setFlags(apiserver, "kubelet-client-certificate", "kubelet-client-key")},
	{"1.2.5", "Ensure that the --kubelet-certificate-authority argument is set as appropriate", automated, apiserver, setFlags(apiserver, "kubelet-certificate-authority")},
	{"1.2.6", "Ensure that the --authorization-mode argument is not set to AlwaysAllow", automated, apiserver, authorization(func(modes []string) bool { return !contains(modes, "AlwaysAllow") })},
	{"1.2.7", "Ensure that the --authorization-mode argument includes Node", automated, apiserver, authorization(func(modes []string) bool { return contains(modes, "Node") })},
	{"1.2.8", "Ensure that the --authorization-mode argument includes RBAC", automated, apiserver, authorization(func(modes []string) bool { return contains(modes, "RBAC") })},
	{"1.2.9", "Ensure that the admission control plugin EventRateLimit is set", manual, apiserver, eventRateLimit},
	{"1.2.10", "Ensure that the admission control plugin AlwaysAdmit is not set", automated, apiserver, listLacks(apiserver, "enable-admission-plugins", "AlwaysAdmit")},
	{"1.2.11", "Ensure that the admission control plugin AlwaysPullImages is set", manual, apiserver, func(c *config) outcome {
		o := listHas(apiserver, "enable-admission-plugins", "AlwaysPullImages")(c)
		if o.status == Fail {
			o.found += " (k1s imports its system images and never pulls them: with AlwaysPullImages they would need a registry)"
		}
		return o
	}},
	{"1.2.12", "Ensure that the admission control plugin ServiceAccount is set", automated, apiserver, listLacks(apiserver, "disable-admission-plugins", "ServiceAccount")},
	{"1.2.13", "Ensure that the admission control plugin NamespaceLifecycle is set", automated, apiserver, listLacks(apiserver, "disable-admission-plugins", "NamespaceLifecycle")},
	{"1.2.14", "Ensure that the admission control plugin NodeRestriction is set", automated, apiserver, listHas(apiserver, "enable-admission-plugins", "NodeRestriction")},
	{"1.2.15", "Ensure that the --profiling argument is set to false", automated, apiserver, boolFlag(apiserver, "profiling", false, true)},
	{"1.2.16", "Ensure that the --audit-log-path argument is set", manual, apiserver, setFlags(apiserver, "audit-log-path")},
	{"1.2.17", "Ensure that the --audit-log-maxage argument is set to 30 or as appropriate", manual, apiserver, minFlag(apiserver, "audit-log-maxage", 30)},
	{"1.2.18", "Ensure that the --audit-log-maxbackup argument is set to 10 or as appropriate", manual, apiserver, minFlag(apiserver, "audit-log-maxbackup", 10)},
	{"1.2.19", "Ensure that the --audit-log-maxsize argument is set to 100 or as appropriate", manual, apiserver, minFlag(apiserver, "audit-log-maxsize", 100)},
	{"1.2.20", "Ensure that the --request-timeout argument is set as appropriate", manual, apiserver, func(c *config) outcome {
		v, ok := c.flag(apiserver, "request-timeout")
		return warn("%s", showFlag("request-timeout", v, ok, "1m0s"))
	}},
	{"1.2.21", "Ensure that the --service-account-lookup argument is set to true", automated, apiserver, boolFlag(apiserver, "service-account-lookup", true, true)},
	{"1.2.22", "Ensure that the --service-account-key-file argument is set as appropriate", automated, apiserver, setFlags(apiserver, "service-account-key-file")},
	{"1.2.23", "Ensure that the --etcd-certfile and --etcd-keyfile arguments are set as appropriate", automated, apiserver, setFlags(apiserver, "etcd-certfile", "etcd-keyfile")},
	{"1.2.24", "Ensure that the --tls-cert-file and --tls-private-key-file arguments are set as appropriate", automated, apiserver, setFlags(apiserver, "tls-cert-file", "tls-private-key-file")},
	{"1.2.25", "Ensure that the --client-ca-file argument is set as appropriate", automated, apiserver, setFlags(apiserver, "client-ca-file")},
	{"1.2.26", "Ensure that the --etcd-cafile argument is set as appropriate", automated, apiserver, setFlags(apiserver, "etcd-cafile")},
	{"1.2.27", "Ensure that the --encryption-provider-config argument is set as appropriate", manual, apiserver, func(c *config) outcome {
		provider, shown, o := c.secretsProvider()
		if provider != "" {
			return pass("%s", shown)
		}
		return o
	}},
	{"1.2.28", "Ensure that encryption providers are appropriately configured", manual, apiserver, func(c *config) outcome {
		provider, shown, o := c.secretsProvider()
		switch provider {
		case "":
			return o
		case "aescbc", "aesgcm", "secretbox", "kms":
			return pass("%s: Secrets' first provider is %s", shown, provider)
		}
		return fail("%s: Secrets' first provider is %s, which does not encrypt them (use aescbc, aesgcm, secretbox or kms)", shown, provider)
	}},
	{"1.2.29", "Ensure that the API Server only makes use of Strong Cryptographic Ciphers", automated, apiserver, func(c *config) outcome {
		v, ok := c.flag(apiserver, "tls-cipher-suites")
		if !ok || v == "" {
			return fail("--tls-cipher-suites not set: Go's default suites apply")
		}
		return strongCiphers("--tls-cipher-suites="+v, splitList(v), apiserverCiphers)
	}},
	// CIS v1.11.
	{"1.2.30", "Ensure that the --service-account-extend-token-expiration parameter is set to false", automated, apiserver, boolFlag(apiserver, "service-account-extend-token-expiration", false, true)},

	// 1.3 Controller Manager
	{"1.3.1", "Ensure that the --terminated-pod-gc-threshold argument is set as appropriate", manual, controllerManager, func(c *config) outcome {
		v, ok := c.flag(controllerManager, "terminated-pod-gc-threshold")
		shown := showFlag("terminated-pod-gc-threshold", v, ok, "12500")
		if n, err := strconv.Atoi(v); ok && err == nil && n > 0 {
			return pass("%s", shown)
		}
		return fail("%s", shown)
	}},
	{"1.3.2", "Ensure that the --profiling argument is set to false", automated, controllerManager, boolFlag(controllerManager, "profiling", false, true)},
	{"1.3.3", "Ensure that the --use-service-account-credentials argument is set to true", automated, controllerManager, boolFlag(controllerManager, "use-service-account-credentials", true, false)},
	{"1.3.4", "Ensure that the --service-account-private-key-file argument is set as appropriate", automated, controllerManager, setFlags(controllerManager, "service-account-private-key-file")},
	{"1.3.5", "Ensure that the --root-ca-file argument is set as appropriate", automated, controllerManager, setFlags(controllerManager, "root-ca-file")},
	{"1.3.6", "Ensure that the RotateKubeletServerCertificate argument is set to true", automated, controllerManager, func(c *config) outcome {
		v, ok := c.flag(controllerManager, "feature-gates")
		g, set := featureGates(v)["RotateKubeletServerCertificate"]
		if !ok || !set {
			return pass("RotateKubeletServerCertificate not in --feature-gates (default true)")
		}
		if b, err := strconv.ParseBool(g); err == nil && b {
			return pass("--feature-gates=%s", v)
		}
		return fail("--feature-gates=%s", v)
	}},
	{"1.3.7", "Ensure that the --bind-address argument is set to 127.0.0.1", automated, controllerManager, loopbackFlag(controllerManager, "bind-address", "0.0.0.0")},

	// 1.4 Scheduler
	{"1.4.1", "Ensure that the --profiling argument is set to false", automated, scheduler, boolFlag(scheduler, "profiling", false, true)},
	{"1.4.2", "Ensure that the --bind-address argument is set to 127.0.0.1", automated, scheduler, loopbackFlag(scheduler, "bind-address", "0.0.0.0")},

	// 2 Etcd Node Configuration
	{"2.1", "Ensure that the --cert-file and --key-file arguments are set as appropriate", automated, etcd, func(c *config) outcome {
		v, ok := c.flag(etcd, "listen-client-urls")
		urls := splitList(v)
		if !ok {
			urls = []string{"http://localhost:2379"}
		}
		for _, u := range urls {
			if strings.HasPrefix(u, "http://") {
				return fail("%s: clients connect over plain HTTP", showFlag("listen-client-urls", v, ok, "http://localhost:2379"))
			}
		}
		// etcd's HTTP endpoints, when apart from the client port, include its JSON gateway to
		// the whole database.
		httpURLs, _ := c.flag(etcd, "listen-client-http-urls")
		for _, u := range splitList(httpURLs) {
			if strings.HasPrefix(u, "http://") {
				return fail("--listen-client-http-urls=%s: clients connect over plain HTTP", httpURLs)
			}
		}
		return setFlags(etcd, "cert-file", "key-file")(c)
	}},
	{"2.2", "Ensure that the --client-cert-auth argument is set to true", automated, etcd, boolFlag(etcd, "client-cert-auth", true, false)},
	{"2.3", "Ensure that the --auto-tls argument is not set to true", automated, etcd, boolFlag(etcd, "auto-tls", false, false)},
	{"2.4", "Ensure that the --peer-cert-file and --peer-key-file arguments are set as appropriate", automated, etcd, func(c *config) outcome {
		urls, shown := c.etcdPeerURLs()
		if len(urls) == 0 {
			return pass("no peer listener (%s)", shown)
		}
		for _, u := range urls {
			if strings.HasPrefix(u, "http://") {
				return fail("%s: peers connect over plain HTTP", shown)
			}
		}
		return setFlags(etcd, "peer-cert-file", "peer-key-file")(c)
	}},
	{"2.5", "Ensure that the --peer-client-cert-auth argument is set to true", automated, etcd, func(c *config) outcome {
		if urls, shown := c.etcdPeerURLs(); len(urls) == 0 {
			return pass("no peer listener (%s)", shown)
		}
		return boolFlag(etcd, "peer-client-cert-auth", true, false)(c)
	}},
	{"2.6", "Ensure that the --peer-auto-tls argument is not set to true", automated, etcd, func(c *config) outcome {
		if urls, shown := c.etcdPeerURLs(); len(urls) == 0 {
			return pass("no peer listener (%s)", shown)
		}
		return boolFlag(etcd, "peer-auto-tls", false, false)(c)
	}},
	{"2.7", "Ensure that a unique Certificate Authority is used for etcd", manual, etcd, uniqueEtcdCA},

	// 4.1 Worker Node Configuration Files
	{"4.1.1", "Ensure that the kubelet service file permissions are set to 600 or more restrictive", automated, "", always(info("%s", noKubeletSvc))},
	{"4.1.2", "Ensure that the kubelet service file ownership is set to root:root", automated, "", always(info("%s", noKubeletSvc))},
	{"4.1.3", "If proxy kubeconfig file exists ensure permissions are set to 600 or more restrictive", automated, kubeProxy, func(c *config) outcome {
		return c.permissions(c.proxyKubeconfig(), 0o600)
	}},
	{"4.1.4", "If proxy kubeconfig file exists ensure ownership is set to root:root", automated, kubeProxy, func(c *config) outcome {
		return c.ownership(c.proxyKubeconfig())
	}},
	{"4.1.5", "Ensure that the --kubeconfig kubelet.conf file permissions are set to 600 or more restrictive", automated, kubelet, func(c *config) outcome {
		return c.permissions(c.kubeletKubeconfig(), 0o600)
	}},
	{"4.1.6", "Ensure that the --kubeconfig kubelet.conf file ownership is set to root:root", automated, kubelet, func(c *config) outcome {
		return c.ownership(c.kubeletKubeconfig())
	}},
	{"4.1.7", "Ensure that the certificate authorities file permissions are set to 600 or more restrictive", automated, kubelet, kubeletReads([]string{"client-ca-file"}, func(c *config) outcome {
		return c.permissions(c.kubeletClientCA(), 0o600)
	})},
	{"4.1.8", "Ensure that the client certificate authorities file ownership is set to root:root", automated, kubelet, kubeletReads([]string{"client-ca-file"}, func(c *config) outcome {
		return c.ownership(c.kubeletClientCA())
	})},
	{"4.1.9", "Ensure that the kubelet --config configuration file has permissions set to 600 or more restrictive", automated, kubelet, func(c *config) outcome {
		return c.permissions(fileSet{paths: []string{c.kubeletFilePath}, noun: "kubelet config files"}, 0o600)
	}},
	{"4.1.10", "Ensure that the kubelet --config configuration file ownership is set to root:root", automated, kubelet, func(c *config) outcome {
		return c.ownership(fileSet{paths: []string{c.kubeletFilePath}, noun: "kubelet config files"})
	}},

	// 4.2 Kubelet
	{"4.2.1", "Ensure that the --anonymous-auth argument is set to false", automated, kubelet, kubeletBool("anonymous-auth", false)},
	{"4.2.2", "Ensure that the --authorization-mode argument is not set to AlwaysAllow", automated, kubelet, kubeletReads([]string{"authorization-mode"}, func(c *config) outcome {
		v, shown, _ := c.kubeletSetting("authorization-mode")
		if v == "" || contains(splitList(v), "AlwaysAllow") {
			return fail("%s", shown)
		}
		return pass("%s", shown)
	})},
	{"4.2.3", "Ensure that the --client-ca-file argument is set as appropriate", automated, kubelet, kubeletReads([]string{"client-ca-file"}, func(c *config) outcome {
		v, shown, _ := c.kubeletSetting("client-ca-file")
		if v == "" {
			return fail("%s", shown)
		}
		return pass("%s", shown)
	})},
	{"4.2.4", "Verify that the --read-only-port argument is set to 0", automated, kubelet, kubeletReads([]string{"read-only-port"}, func(c *config) outcome {
		v, shown, _ := c.kubeletSetting("read-only-port")
		if v == "0" {
			return pass("%s", shown)
		}
		return fail("%s", shown)
	})},
	{"4.2.5", "Ensure that the --streaming-connection-idle-timeout argument is not set to 0", manual, kubelet, kubeletReads([]string{"streaming-connection-idle-timeout"}, func(c *config) outcome {
		v, shown, set := c.kubeletSetting("streaming-connection-idle-timeout")
		d, err := time.ParseDuration(v)
		switch {
		case err != nil:
			return fail("%s: not a duration", shown)
		case d == 0:
			return fail("%s: streaming connections never time out", shown)
		case !set:
			return fail("%s", shown)
		}
		return pass("%s", shown)
	})},
	{"4.2.6", "Ensure that the --make-iptables-util-chains argument is set to true", automated, kubelet, kubeletBool("make-iptables-util-chains", true)},
	{"4.2.7", "Ensure that the --hostname-override argument is not set", automated, kubelet, func(c *config) outcome {
		note := "k1s sets it to the node name (--node-name), as k3s does: not applicable"
		if v, ok := c.flag(kubelet, "hostname-override"); ok {
			note = fmt.Sprintf("--hostname-override=%s (kubelet argument); %s", v, note)
		}
		return info("%s", note)
	}},
	{"4.2.8", "Ensure that the eventRecordQPS argument is set to a level which ensures appropriate event capture", manual, kubelet, kubeletReads([]string{"event-qps"}, func(c *config) outcome {
		_, shown, _ := c.kubeletSetting("event-qps")
		return warn("%s", shown)
	})},
	{"4.2.9", "Ensure that the --tls-cert-file and --tls-private-key-file arguments are set as appropriate", automated, kubelet, kubeletReads([]string{"tls-cert-file", "tls-private-key-file", "rotate-server-certificates"}, func(c *config) outcome {
		cert, certShown, _ := c.kubeletSetting("tls-cert-file")
		key, keyShown, _ := c.kubeletSetting("tls-private-key-file")
		if cert != "" && key != "" {
			return pass("%s, %s", certShown, keyShown)
		}
		bootstrap, shown, _ := c.kubeletSetting("rotate-server-certificates")
		if b, _ := strconv.ParseBool(bootstrap); b {
			return pass("%s: the serving certificate is issued through a CSR by the kubelet-serving CA", shown)
		}
		return fail("%s, %s, %s: the kubelet serves a self-signed certificate", certShown, keyShown, shown)
	})},
	{"4.2.10", "Ensure that the --rotate-certificates argument is not set to false", automated, kubelet, kubeletBool("rotate-certificates", true)},
	{"4.2.11", "Verify that the RotateKubeletServerCertificate argument is set to true", automated, kubelet, func(c *config) outcome {
		v, shown, unseen := c.kubeletFeatureGate("RotateKubeletServerCertificate")
		if unseen != "" {
			return unverified("%s", unseen)
		}
		if b, err := strconv.ParseBool(v); v == "" || (err == nil && b) {
			return pass("%s", shown)
		}
		return fail("%s", shown)
	}},
	{"4.2.12", "Ensure that the Kubelet only makes use of Strong Cryptographic Ciphers", manual, kubelet, kubeletReads([]string{"tls-cipher-suites"}, func(c *config) outcome {
		v, shown, _ := c.kubeletSetting("tls-cipher-suites")
		if v == "" {
			return fail("%s: Go's default suites apply", shown)
		}
		return strongCiphers(shown, splitList(v), kubeletCiphers)
	})},
	{"4.2.13", "Ensure that a limit is set on pod PIDs", manual, kubelet, kubeletReads([]string{"pod-max-pids"}, func(c *config) outcome {
		v, shown, _ := c.kubeletSetting("pod-max-pids")
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
			return pass("%s", shown)
		}
		return fail("%s", shown)
	})},
	// CIS v1.11.
	{"4.2.14", "Ensure that the --seccomp-default parameter is set to true", manual, kubelet, kubeletBool("seccomp-default", true)},

	// 4.3 kube-proxy
	{"4.3.1", "Ensure that the kube-proxy metrics service is bound to localhost", automated, kubeProxy, func(c *config) outcome {
		v, ok := c.flag(kubeProxy, "metrics-bind-address")
		if !ok {
			return pass("--metrics-bind-address not set (default 127.0.0.1:10249)")
		}
		if isLoopback(v) {
			return pass("--metrics-bind-address=%s", v)
		}
		return fail("--metrics-bind-address=%s", v)
	}},

	// 5.2 Pod Security Standards: what the Pod Security admission default enforces; namespace
	// labels can change it, so these stay manual.
	{"5.2.1", "Ensure that the cluster has at least one active policy control mechanism in place", manual, apiserver, podSecurity("baseline", "", "")},
	{"5.2.2", "Minimize the admission of privileged containers", manual, apiserver, podSecurity("baseline", "privileged containers", "")},
	{"5.2.3", "Minimize the admission of containers wishing to share the host process ID namespace", manual, apiserver, podSecurity("baseline", "hostPID", "")},
	{"5.2.4", "Minimize the admission of containers wishing to share the host IPC namespace", manual, apiserver, podSecurity("baseline", "hostIPC", "")},
	{"5.2.5", "Minimize the admission of containers wishing to share the host network namespace", manual, apiserver, podSecurity("baseline", "hostNetwork", "")},
	{"5.2.6", "Minimize the admission of containers with allowPrivilegeEscalation", manual, apiserver, podSecurity("restricted", "allowPrivilegeEscalation", "")},
	{"5.2.7", "Minimize the admission of root containers", manual, apiserver, podSecurity("restricted", "containers running as root", "")},
	{"5.2.8", "Minimize the admission of containers with the NET_RAW capability", manual, apiserver, podSecurity("restricted", "NET_RAW", "baseline refuses adding it, not the runtime's default")},
	{"5.2.9", "Minimize the admission of containers with added capabilities", manual, apiserver, podSecurity("restricted", "added capabilities", "baseline allows adding the runtime's default ones")},
	{"5.2.10", "Minimize the admission of containers with capabilities assigned", manual, apiserver, podSecurity("restricted", "containers that do not drop ALL capabilities", "")},
	{"5.2.11", "Minimize the admission of Windows HostProcess containers", manual, apiserver, podSecurity("baseline", "Windows HostProcess containers", "")},
	{"5.2.12", "Minimize the admission of HostPath volumes", manual, apiserver, podSecurity("baseline", "hostPath volumes", "")},
	{"5.2.13", "Minimize the admission of containers which use HostPorts", manual, apiserver, podSecurity("baseline", "hostPorts", "")},
}

func always(o outcome) func(*config) outcome { return func(*config) outcome { return o } }

// showFlag shows a flag as recorded, or that it is not set and its default.
func showFlag(key, value string, set bool, def string) string {
	switch {
	case set:
		return "--" + key + "=" + value
	case def != "":
		return "--" + key + " not set (default " + def + ")"
	}
	return "--" + key + " not set"
}

// boolFlag passes when a boolean flag is want; def is its value when not set.
func boolFlag(comp, key string, want, def bool) func(*config) outcome {
	return func(c *config) outcome {
		v, ok := c.flag(comp, key)
		shown := showFlag(key, v, ok, strconv.FormatBool(def))
		value := def
		if ok {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return fail("%s: not a boolean", shown)
			}
			value = b
		}
		if value == want {
			return pass("%s", shown)
		}
		return fail("%s", shown)
	}
}

// setFlags passes when every flag is set to a value.
func setFlags(comp string, keys ...string) func(*config) outcome {
	return func(c *config) outcome {
		var shown []string
		for _, k := range keys {
			v, ok := c.flag(comp, k)
			if !ok || v == "" {
				return fail("--%s not set", k)
			}
			shown = append(shown, "--"+k+"="+v)
		}
		return pass("%s", strings.Join(shown, ", "))
	}
}

// unsetFlag passes when a flag is not set.
func unsetFlag(comp, key string) func(*config) outcome {
	return func(c *config) outcome {
		if v, ok := c.flag(comp, key); ok {
			return fail("--%s=%s", key, v)
		}
		return pass("--%s not set", key)
	}
}

// listHas passes when a comma-separated flag lists item.
func listHas(comp, key, item string) func(*config) outcome {
	return func(c *config) outcome {
		v, ok := c.flag(comp, key)
		if contains(splitList(v), item) {
			return pass("--%s=%s", key, v)
		}
		return fail("%s not in %s", item, showFlag(key, v, ok, ""))
	}
}

// listLacks passes when a comma-separated flag does not list item.
func listLacks(comp, key, item string) func(*config) outcome {
	return func(c *config) outcome {
		v, ok := c.flag(comp, key)
		if contains(splitList(v), item) {
			return fail("--%s=%s", key, v)
		}
		return pass("%s", showFlag(key, v, ok, ""))
	}
}

// minFlag passes when an integer flag is at least min.
func minFlag(comp, key string, min int) func(*config) outcome {
	return func(c *config) outcome {
		v, ok := c.flag(comp, key)
		shown := showFlag(key, v, ok, "")
		if n, err := strconv.Atoi(v); ok && err == nil && n >= min {
			return pass("%s", shown)
		}
		return fail("%s (recommended: %d or more)", shown, min)
	}
}

// loopbackFlag passes when an address flag is a loopback address; def is its value when not
// set.
func loopbackFlag(comp, key, def string) func(*config) outcome {
	return func(c *config) outcome {
		v, ok := c.flag(comp, key)
		shown := showFlag(key, v, ok, def)
		if !ok {
			v = def
		}
		if isLoopback(v) {
			return pass("%s", shown)
		}
		return fail("%s", shown)
	}
}

// isLoopback tells an address ("127.0.0.1", "[::1]:10249", "localhost:1") on the loopback.
func isLoopback(addr string) bool {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func kubeletBool(flag string, want bool) func(*config) outcome {
	return kubeletReads([]string{flag}, func(c *config) outcome {
		v, shown, _ := c.kubeletSetting(flag)
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fail("%s: not a boolean", shown)
		}
		if b == want {
			return pass("%s", shown)
		}
		return fail("%s", shown)
	})
}

// anonymousAllowed are the requests k1s lets through anonymously: health checks, and the
// signed cluster-info a joining node reads before it trusts the server.
var anonymousAllowed = []string{"/livez", "/readyz", "/healthz", "/api/v1/namespaces/kube-public/configmaps/cluster-info"}

// anonymousAuth (1.2.1): the structured authentication configuration's anonymous section
// wins over --anonymous-auth. Anonymous access limited to anonymousAllowed passes.
func anonymousAuth(c *config) outcome {
	if path, ok := c.flag(apiserver, "authentication-config"); ok && path != "" {
		var cfg struct {
			Anonymous *struct {
				Enabled    bool `json:"enabled"`
				Conditions []struct {
					Path string `json:"path"`
				} `json:"conditions"`
			} `json:"anonymous"`
		}
		if err := readConfig("authentication-config", path, &cfg); err != nil {
			return unverified("%v", err)
		}
		if a := cfg.Anonymous; a != nil {
			shown := "--authentication-config=" + c.rel(path)[0]
			if !a.Enabled {
				return pass("%s: anonymous disabled", shown)
			}
			if len(a.Conditions) == 0 {
				return fail("%s: anonymous enabled for every request", shown)
			}
			var paths, other []string
			for _, cond := range a.Conditions {
				paths = append(paths, cond.Path)
				if !contains(anonymousAllowed, cond.Path) {
					other = append(other, cond.Path)
				}
			}
			if len(other) > 0 {
				return fail("%s: anonymous enabled for %s, beyond the health checks and cluster-info", shown, strings.Join(other, ", "))
			}
			return pass("%s: anonymous enabled only for %s (health checks, and the signed cluster-info joining nodes read)", shown, strings.Join(paths, ", "))
		}
	}
	return boolFlag(apiserver, "anonymous-auth", false, true)(c)
}

// authorization passes when the apiserver's authorization modes satisfy ok. The structured
// --authorization-config wins over --authorization-mode.
func authorization(ok func(modes []string) bool) func(*config) outcome {
	return func(c *config) outcome {
		var modes []string
		var shown string
		if path, set := c.flag(apiserver, "authorization-config"); set && path != "" {
			var cfg struct {
				Authorizers []struct {
					Type string `json:"type"`
				} `json:"authorizers"`
			}
			if err := readConfig("authorization-config", path, &cfg); err != nil {
				return unverified("%v", err)
			}
			for _, a := range cfg.Authorizers {
				modes = append(modes, a.Type)
			}
			shown = fmt.Sprintf("--authorization-config=%s: %s", c.rel(path)[0], strings.Join(modes, ","))
		} else {
			v, set := c.flag(apiserver, "authorization-mode")
			shown = showFlag("authorization-mode", v, set, "AlwaysAllow")
			modes = splitList(v)
			if !set {
				modes = []string{"AlwaysAllow"}
			}
		}
		if ok(modes) {
			return pass("%s", shown)
		}
		return fail("%s", shown)
	}
}

// admissionPlugin is one plugin of an AdmissionConfiguration.
type admissionPlugin struct {
	Name          string          `json:"name"`
	Path          string          `json:"path"`
	Configuration json.RawMessage `json:"configuration"`
}

// admissionPlugins are the plugins the apiserver's admission configuration configures.
func (c *config) admissionPlugins() (plugins []admissionPlugin, path string, err error) {
	path, ok := c.flag(apiserver, "admission-control-config-file")
	if !ok || path == "" {
		return nil, "", nil
	}
	var cfg struct {
		Plugins []admissionPlugin `json:"plugins"`
	}
	if err := readConfig("admission-control-config-file", path, &cfg); err != nil {
		return nil, path, err
	}
	return cfg.Plugins, path, nil
}

func eventRateLimit(c *config) outcome {
	v, ok := c.flag(apiserver, "enable-admission-plugins")
	if !contains(splitList(v), "EventRateLimit") {
		return fail("EventRateLimit not in %s", showFlag("enable-admission-plugins", v, ok, ""))
	}
	plugins, path, err := c.admissionPlugins()
	if err != nil {
		return unverified("%v", err)
	}
	for _, p := range plugins {
		if p.Name == "EventRateLimit" {
			return pass("--enable-admission-plugins=%s, configured in %s", v, c.rel(path)[0])
		}
	}
	return fail("--enable-admission-plugins=%s, but no EventRateLimit configuration in --admission-control-config-file", v)
}

// secretsProvider is the first encryption provider for Secrets in the apiserver's encryption
// configuration; "" with the failing outcome when there is none.
func (c *config) secretsProvider() (provider, shown string, o outcome) {
	path, ok := c.flag(apiserver, "encryption-provider-config")
	if !ok || path == "" {
		return "", "", fail("--encryption-provider-config not set: Secrets are stored in etcd unencrypted")
	}
	shown = "--encryption-provider-config=" + c.rel(path)[0]
	var cfg struct {
		Resources []struct {
			Resources []string                     `json:"resources"`
			Providers []map[string]json.RawMessage `json:"providers"`
		} `json:"resources"`
	}
	if err := readConfig("encryption-provider-config", path, &cfg); err != nil {
		return "", shown, unverified("%v", err)
	}
	for _, r := range cfg.Resources {
		for _, name := range r.Resources {
			if name != "secrets" && name != "secrets." && name != "*." && name != "*.*" {
				continue
			}
			if len(r.Providers) == 0 {
				return "", shown, fail("%s: no provider for secrets", shown)
			}
			keys := make([]string, 0, 1)
			for k := range r.Providers[0] {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			if len(keys) == 0 {
				return "", shown, fail("%s: empty first provider for secrets", shown)
			}
			return keys[0], shown, outcome{}
		}
	}
	return "", shown, fail("%s: does not cover secrets", shown)
}

// Strong cipher suites, as the k3s self-assessment's audits for v1.10 list them. Go spells
// the ChaCha20 suites with a _SHA256 suffix; both spellings are the same suite.
var (
	apiserverCiphers = []string{
		"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256",
		"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
		"TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
		"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
		"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
		"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
		"TLS_RSA_WITH_AES_128_GCM_SHA256", "TLS_RSA_WITH_AES_256_GCM_SHA384",
	}
	kubeletCiphers = []string{
		"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
		"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
		"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
		"TLS_RSA_WITH_AES_256_GCM_SHA384", "TLS_RSA_WITH_AES_128_GCM_SHA256",
	}
)

func strongCiphers(shown string, suites, allowed []string) outcome {
	var weak []string
	for _, s := range suites {
		name := s
		if strings.HasPrefix(name, "TLS_ECDHE_") && strings.HasSuffix(name, "_CHACHA20_POLY1305_SHA256") {
			name = strings.TrimSuffix(name, "_SHA256")
		}
		if !contains(allowed, name) {
			weak = append(weak, s)
		}
	}
	if len(weak) > 0 {
		return fail("%s: not strong: %s", shown, strings.Join(weak, ", "))
	}
	return pass("%s", shown)
}

// etcdDataDir is etcd's --data-dir.
func (c *config) etcdDataDir() fileSet {
	set := fileSet{noun: "etcd data directories"}
	if v, ok := c.flag(etcd, "data-dir"); ok && v != "" {
		set.paths = []string{v}
	}
	return set
}

// etcdDataDirOwner (1.1.12) does not apply: etcd runs in the k1s process, as root.
func etcdDataDirOwner(c *config) outcome {
	const why = "etcd runs in the k1s process, as root, not as an etcd user: not applicable"
	set := c.etcdDataDir()
	if len(set.paths) == 0 {
		return info("%s", why)
	}
	_, own, err := stat(set.paths[0])
	if err != nil {
		return info("%s (%v)", why, err)
	}
	return info("%s (%s is %s)", why, c.rel(set.paths[0])[0], own)
}

// etcdPeerURLs are where etcd listens for peers: none when the flag is set empty.
func (c *config) etcdPeerURLs() (urls []string, shown string) {
	v, ok := c.flag(etcd, "listen-peer-urls")
	if !ok {
		return []string{"http://localhost:2380"}, showFlag("listen-peer-urls", "", false, "http://localhost:2380")
	}
	return splitList(v), "--listen-peer-urls=" + v
}

// uniqueEtcdCA (2.7) passes when etcd trusts a CA other than those the apiserver accepts
// clients from: by path, else by content, so it needs every file it compares.
func uniqueEtcdCA(c *config) outcome {
	ca, ok := c.flag(etcd, "trusted-ca-file")
	if !ok || ca == "" {
		return fail("--trusted-ca-file not set")
	}
	if api := c.comps[apiserver]; !api.present {
		return unverified("cannot compare with the apiserver's CAs: %s not found", c.rel(api.files...)[0])
	} else if api.err != nil {
		return unverified("%v", api.err)
	}
	caData, caErr := os.ReadFile(ca)
	for _, key := range []string{"client-ca-file", "requestheader-client-ca-file"} {
		other, ok := c.flag(apiserver, key)
		if !ok || other == "" {
			continue
		}
		if filepath.Clean(other) == filepath.Clean(ca) {
			return fail("etcd's --trusted-ca-file=%s is also the apiserver's --%s", c.rel(ca)[0], key)
		}
		if caErr != nil {
			return unverified("cannot compare etcd's --trusted-ca-file with the apiserver's CAs: %v", caErr)
		}
		otherData, err := os.ReadFile(other)
		if err != nil {
			return unverified("cannot compare etcd's --trusted-ca-file with the apiserver's --%s: %v", key, err)
		}
		if bytes.Equal(bytes.TrimSpace(otherData), bytes.TrimSpace(caData)) {
			return fail("etcd's --trusted-ca-file=%s is also the apiserver's --%s", c.rel(ca)[0], key)
		}
	}
	return pass("--trusted-ca-file=%s, not a CA the apiserver accepts clients from", c.rel(ca)[0])
}

// Pod Security levels, from least to most restrictive.
var podSecurityRank = map[string]int{"privileged": 0, "baseline": 1, "restricted": 2}

// podSecurityDefault is the level Pod Security admission enforces where a namespace sets
// none, and a description of it for a finding.
func (c *config) podSecurityDefault() (level, shown string, err error) {
	if v, _ := c.flag(apiserver, "disable-admission-plugins"); contains(splitList(v), "PodSecurity") {
		return "", "Pod Security admission disabled (--disable-admission-plugins=" + v + ")", nil
	}
	plugins, path, err := c.admissionPlugins()
	if err != nil {
		return "", "", err
	}
	for _, p := range plugins {
		if p.Name != "PodSecurity" {
			continue
		}
		var cfg struct {
			Defaults struct {
				Enforce string `json:"enforce"`
			} `json:"defaults"`
			Exemptions struct {
				Namespaces []string `json:"namespaces"`
			} `json:"exemptions"`
		}
		raw := []byte(p.Configuration)
		source := c.rel(path)[0]
		if p.Path != "" {
			file := p.Path
			if !filepath.IsAbs(file) {
				file = filepath.Join(filepath.Dir(path), file)
			}
			if raw, err = os.ReadFile(file); err != nil {
				return "", "", fmt.Errorf("PodSecurity configuration: %w", err)
			}
			source = c.rel(file)[0]
		}
		if len(raw) > 0 {
			if err := yaml.Unmarshal(raw, &cfg); err != nil {
				return "", "", fmt.Errorf("PodSecurity configuration in %s: %w", source, err)
			}
		}
		level = cfg.Defaults.Enforce
		if level == "" {
			level = "privileged"
		}
		shown = fmt.Sprintf("Pod Security enforces %s by default (%s", level, source)
		if len(cfg.Exemptions.Namespaces) > 0 {
			shown += "; exempt namespaces: " + strings.Join(cfg.Exemptions.Namespaces, ", ")
		}
		return level, shown + ")", nil
	}
	return "privileged", "Pod Security enforces privileged by default (no PodSecurity configuration in --admission-control-config-file)", nil
}

// podSecurity reports, for a person to judge, whether the default Pod Security level refuses
// what; need is the lowest level that does, and note qualifies a lower level's answer.
func podSecurity(need, what, note string) func(*config) outcome {
	return func(c *config) outcome {
		level, shown, err := c.podSecurityDefault()
		if err != nil {
			return unverified("%v", err)
		}
		if what == "" {
			return warn("%s", shown)
		}
		rank, ok := podSecurityRank[level]
		if ok && rank >= podSecurityRank[need] {
			return warn("%s: %s refused", shown, what)
		}
		if note != "" && level == "baseline" {
			return warn("%s: %s allowed (%s; %s refuses them)", shown, what, note, need)
		}
		return warn("%s: %s allowed (%s refuses them)", shown, what, need)
	}
}
