// Package addons is the registry of k1s's packaged add-ons: for each, its name (the --disable
// key), its manifest, the payload images it uses, and its cluster-side and node-side
// components. The server deploys every entry through the one deployer (internal/deploy), and
// removes those the user disabled.
package addons

import (
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/k1s-io/k1s/internal/addons/coredns"
	"github.com/k1s-io/k1s/internal/component"
	"github.com/k1s-io/k1s/internal/controllers"
	"github.com/k1s-io/k1s/internal/deploy"
)

// Settings are the cluster's settings add-ons are rendered with.
type Settings struct {
	ClusterDNS    net.IP
	ClusterDomain string
	// ResolvConf lists the upstream resolvers of the server's node.
	ResolvConf string
	// Images are the payload's image references by name (pause, coredns).
	Images map[string]string
	Log    logrus.FieldLogger
}

// NodeSettings are what a node-side component of an add-on is built with.
type NodeSettings struct {
	NodeName string
	// Kubeconfig is the node's own credential.
	Kubeconfig string
	Log        logrus.FieldLogger
}

// Addon is one packaged add-on.
type Addon struct {
	// Name is the --disable key and the manifest's file name (Name.yaml in manifests/).
	Name string
	// Images are the payload images its manifests use.
	Images []string
	// Values fills its manifest's %{NAME}% placeholders.
	Values func(Settings) (map[string]string, error)
	// Cluster, if set, returns its cluster-side controllers, run by the server that holds the
	// controllers' lease.
	Cluster func(Settings) []controllers.Controller
	// Node, if set, returns its node-side components, run on every node.
	Node func(NodeSettings) []component.Component
}

// Registry lists k1s's packaged add-ons.
func Registry() []Addon {
	return []Addon{
		{
			Name:   "coredns",
			Images: []string{"coredns"},
			Values: func(s Settings) (map[string]string, error) {
				values, forwardless, err := coredns.Values(s.ClusterDNS, s.ClusterDomain, s.ResolvConf, s.Images["coredns"])
				if err == nil && forwardless && s.Log != nil {
					s.Log.Warnf("%s names no resolver CoreDNS can forward to (loopback resolvers are the pod's own): cluster names resolve, others do not", s.ResolvConf)
				}
				return values, err
			},
		},
	}
}

// Names are the add-ons' names, the values --disable takes.
func Names() []string {
	var names []string
	for _, a := range Registry() {
		names = append(names, a.Name)
	}
	return names
}

// ValidateDisabled checks the names given to --disable.
func ValidateDisabled(disabled []string) error {
	names := Names()
	for _, d := range disabled {
		if !slices.Contains(names, d) {
			return fmt.Errorf("--disable %q: unknown add-on; k1s ships: %s", d, strings.Join(names, ", "))
		}
	}
	return nil
}

// Enabled are the registry's add-ons that are not disabled.
func Enabled(disabled []string) []Addon {
	var out []Addon
	for _, a := range Registry() {
		if !slices.Contains(disabled, a.Name) {
			out = append(out, a)
		}
	}
	return out
}

// Manifests are what the deployer applies: every add-on, rendered with s, and marked for
// removal when disabled (its placeholders need no values then).
func Manifests(s Settings, disabled []string) ([]deploy.Addon, error) {
	var out []deploy.Addon
	for _, a := range Registry() {
		d := deploy.Addon{Name: a.Name, Disabled: slices.Contains(disabled, a.Name)}
		if !d.Disabled && a.Values != nil {
			values, err := a.Values(s)
			if err != nil {
				return nil, fmt.Errorf("add-on %s: %w", a.Name, err)
			}
			d.Values = values
		}
		out = append(out, d)
	}
	return out, nil
}

// NodeComponents are the node-side components of the enabled add-ons, for one node.
func NodeComponents(s NodeSettings, disabled []string) []component.Component {
	return collect(disabled, func(a Addon) []component.Component {
		if a.Node == nil {
			return nil
		}
		return a.Node(s)
	})
}

// ClusterControllers are the cluster-side controllers of the enabled add-ons.
func ClusterControllers(s Settings, disabled []string) []controllers.Controller {
	return collect(disabled, func(a Addon) []controllers.Controller {
		if a.Cluster == nil {
			return nil
		}
		return a.Cluster(s)
	})
}

func collect[T any](disabled []string, parts func(Addon) []T) []T {
	var out []T
	for _, a := range Enabled(disabled) {
		out = append(out, parts(a)...)
	}
	return out
}
