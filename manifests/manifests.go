// Package manifests holds the add-ons k1s deploys, embedded in the binary. Placeholders of the
// form %{NAME}% are filled in by internal/deploy.
package manifests

import "embed"

// FS holds every add-on manifest, by file name.
//
//go:embed *.yaml
var FS embed.FS
