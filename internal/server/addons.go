package server

import (
	"fmt"

	"github.com/k1s-io/k1s/internal/addons"
	"github.com/k1s-io/k1s/internal/component"
	"github.com/k1s-io/k1s/internal/controllers"
	"github.com/k1s-io/k1s/internal/deploy"
	"github.com/k1s-io/k1s/internal/deploy/helm"
	"github.com/k1s-io/k1s/internal/join"
	"github.com/k1s-io/k1s/internal/kubeclient"
	"github.com/k1s-io/k1s/internal/payload"
	"github.com/k1s-io/k1s/internal/pki"
	"github.com/k1s-io/k1s/manifests"
)

// newRBAC returns the component that applies k1s's RBAC, which nodes need to join: every
// server applies it before its own node joins (the same objects, so servers agree).
func newRBAC(admin *kubeclient.Lazy) component.Component {
	return deploy.Task("k1s RBAC", admin.RESTConfig, manifests.FS, []deploy.Addon{rbacAddon()})
}

// rbacAddon is the packaged add-on that grants nodes and the apiserver what k1s needs; it
// cannot be disabled.
func rbacAddon() deploy.Addon {
	return deploy.Addon{Name: "rbac", Required: true, Values: map[string]string{"APISERVER_KUBELET_USER": pki.APIServerKubeletUser}}
}

// addonSettings are the cluster's settings the packaged add-ons are rendered with.
func (c *completedConfig) addonSettings() (addons.Settings, error) {
	s := addons.Settings{ClusterDNS: c.ClusterDNS, ClusterDomain: c.ClusterDomain, ResolvConf: c.ResolvConf,
		APIServerPort: c.HTTPSPort, MetricsServerPort: c.MetricsServerPort, NodeIP: c.NodeIP, Files: c.files, Log: c.Log}
	clientAuth, err := c.apiserverClientAuth()
	if err != nil {
		return s, err
	}
	s.APIServerClientAuth = clientAuth
	for _, a := range addons.Enabled(c.Disable) {
		if len(a.Images) == 0 {
			continue
		}
		if s.Images == nil {
			images, err := payload.ImageRefs()
			if err != nil {
				return s, fmt.Errorf("the add-ons' images: %w", err)
			}
			s.Images = images
		}
		for _, name := range a.Images {
			if s.Images[name] == "" {
				return s, fmt.Errorf("add-on %s: the payload has no %s image: rebuild k1s with `make build`", a.Name, name)
			}
		}
	}
	return s, nil
}

// newControllers returns k1s's cluster-scoped controllers, run under the controllers' lease
// so that one server runs them: the cluster-info publisher, the CSR approver, the add-on
// deployer (the packaged add-ons, disabled ones removed, and the manifests directory), and the
// add-ons' own controllers.
func newControllers(cfg *completedConfig, admin *kubeclient.Lazy, etcdURL string) (component.Component, error) {
	settings, err := cfg.addonSettings()
	if err != nil {
		return nil, err
	}
	settings.Client = admin.Client
	list, err := addons.Manifests(settings, cfg.Disable)
	if err != nil {
		return nil, err
	}
	publisher := &controllers.ClusterInfoPublisher{
		Client:    admin.Client,
		CAFile:    cfg.files.ServerCA().Cert,
		ServerURL: cfg.advertisedAPIServerURL(),
		Settings: join.NodeConfig{ClusterCIDR: cfg.ClusterCIDR, ServiceCIDR: cfg.ServiceCIDR, ClusterDNS: cfg.ClusterDNS,
			ClusterDomain: cfg.ClusterDomain, DisabledAddons: cfg.Disable},
	}
	cs := []controllers.Controller{
		publisher,
		controllers.NewCSRApprover(admin.Client, cfg.servingPolicy(), cfg.Log),
		&deploy.Controller{
			Dir:      cfg.files.ManifestsDir(),
			FS:       manifests.FS,
			CRDs:     manifests.CRDs,
			CRDFiles: crdFiles(cfg),
			Packaged: append([]deploy.Addon{rbacAddon()}, list...),
			Config:   admin.RESTConfig,
			Client:   admin.Client,
			Log:      cfg.Log,
		},
	}
	if !cfg.DisableHelmController {
		cs = append(cs, &helm.Controller{
			Kubeconfig: cfg.files.SupervisorKubeconfig(),
			Config:     admin.RESTConfig,
			Client:     admin.Client,
			StaticDir:  cfg.files.StaticDir(),
			CacheDir:   cfg.files.HelmCacheDir(),
			Log:        cfg.Log,
		})
	}
	cs = append(cs, addons.ClusterControllers(settings, cfg.Disable)...)
	cs = append(cs, &controllers.EtcdMemberReconciler{Client: admin.Client, Members: cfg.etcdMembers(etcdURL), AddFinalizers: cfg.clustered, Log: cfg.Log})
	return controllers.NewRunner(controllers.Config{
		Client:      admin.Client,
		Identity:    cfg.NodeName,
		Log:         cfg.Log,
		Controllers: cs,
	}), nil
}

// crdFiles are the definitions of k1s's kinds the server installs: the Addon kind, and the
// HelmChart kinds unless the Helm controller is off.
func crdFiles(cfg *completedConfig) []string {
	files := []string{manifests.AddonCRD}
	if !cfg.DisableHelmController {
		files = append(files, manifests.HelmCRDs)
	}
	return files
}

// servingPolicy is what no kubelet serving certificate may name.
func (c *completedConfig) servingPolicy() controllers.ServingPolicy {
	ips, names := c.apiServerSANs()
	policy := controllers.ServingPolicy{ServiceCIDR: c.ServiceCIDR, ClusterCIDR: c.ClusterCIDR, ClusterDomain: c.ClusterDomain,
		ServerIPs: ips, ServerNames: names}
	// The server's own node has its name and address; without one, no node may.
	if !c.WithoutNode {
		policy.ServerNode = c.NodeName
	}
	return policy
}
