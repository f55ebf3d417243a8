package server

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"

	"k8s.io/client-go/rest"

	"github.com/k1s-io/k1s/internal/component"
	"github.com/k1s-io/k1s/internal/deploy"
	"github.com/k1s-io/k1s/internal/payload"
	"github.com/k1s-io/k1s/internal/pki"
	"github.com/k1s-io/k1s/manifests"
)

// newRBAC returns the component that applies k1s's RBAC, which nodes need to join.
func newRBAC(admin *adminClient) component.Component {
	return deploy.New("k1s RBAC", manifests.FS, admin.restConfig, []deploy.Addon{
		{Name: "rbac", Values: map[string]string{"APISERVER_KUBELET_USER": pki.APIServerKubeletUser}},
	})
}

// newAddons returns the component that deploys the add-ons (CoreDNS).
func newAddons(cfg *Config, admin *adminClient) (component.Component, error) {
	disabled := slices.Contains(cfg.Disable, "coredns")
	values := map[string]string{"CLUSTER_DNS": cfg.ClusterDNS.String(), "CLUSTER_DOMAIN": cfg.ClusterDomain}
	if !disabled {
		images, err := payload.ImageRefs()
		if err != nil {
			return nil, fmt.Errorf("CoreDNS image: %w", err)
		}
		values["COREDNS_IMAGE"] = images["coredns"]
		if values["FORWARD"], err = forwardDirective(cfg.ResolvConf); err != nil {
			return nil, err
		}
		if values["FORWARD"] == "" {
			cfg.Log.Warnf("%s names no resolver CoreDNS can forward to (loopback resolvers are the pod's own): cluster names resolve, others do not", cfg.ResolvConf)
		}
	}
	return deploy.New("add-ons", manifests.FS, admin.restConfig, []deploy.Addon{{Name: "coredns", Disabled: disabled, Values: values}}), nil
}

// forwardDirective is CoreDNS's forward line for the resolvers in resolvConf. Loopback
// resolvers are left out: inside the CoreDNS pod they are CoreDNS itself.
func forwardDirective(resolvConf string) (string, error) {
	if resolvConf == "" {
		return "", nil
	}
	f, err := os.Open(resolvConf)
	if err != nil {
		return "", fmt.Errorf("--resolv-conf: %w", err)
	}
	defer f.Close()
	var upstream []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "nameserver" {
			if ip := net.ParseIP(fields[1]); ip != nil && !ip.IsLoopback() {
				upstream = append(upstream, ip.String())
			}
		}
	}
	if len(upstream) == 0 {
		return "", sc.Err()
	}
	return "forward . " + strings.Join(upstream, " "), sc.Err()
}

func (a *adminClient) restConfig() (*rest.Config, error) {
	if _, err := a.get(); err != nil {
		return nil, err
	}
	return a.config, nil
}
