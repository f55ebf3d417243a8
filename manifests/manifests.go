// Package manifests holds the add-ons k1s deploys, embedded in the binary, and the definitions
// of k1s's own API kinds. Placeholders of the form %{NAME}% are filled in by internal/deploy.
package manifests

import "embed"

// FS holds every add-on manifest, by file name.
//
//go:embed *.yaml
var FS embed.FS

// CRDs holds the CustomResourceDefinitions of k1s's kinds (crds/*.yaml), which the add-on
// deployer installs before anything else.
//
//go:embed crds/*.yaml
var CRDs embed.FS

// The files of CRDs.
const (
	AddonCRD = "crds/addons.k1s.io.yaml"
	HelmCRDs = "crds/helm.cattle.io.yaml"
)
