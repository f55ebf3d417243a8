// Package kubectli18n keeps kubectl's translations out of the k1s processes that never print
// kubectl's texts. kubectl's packages translate their help texts while Go initialises them, and
// the first translation loads the catalogue: ~35 ms and 4.6 MB of allocations at every start of
// the other k1s processes (server, agent, containerd, ctr). kubectl's hook for this
// (i18n.SetLoadTranslationsFunc) must be set before any of those packages is initialised. Go
// initialises packages in import-path order once their imports are: this one imports nothing
// that is not initialised before i18n, so it is ready as soon as i18n is, and it sorts before
// every package that translates (all under k8s.io/). A k1s package that called i18n.T while Go
// initialises it would break this (TestKubectlCatalogueNotLoadedAtInit in internal/cli).
package kubectli18n

import (
	"os"
	"path/filepath"

	"k8s.io/kubectl/pkg/util/i18n"
)

func init() {
	if RunsKubectl(os.Args) {
		return
	}
	// Without a catalogue every text is its English original. The error only says that
	// translations were loaded already, which then cost what they cost.
	_ = i18n.SetLoadTranslationsFunc(func() error { return nil })
}

// RunsKubectl says whether a command line runs kubectl: the multicall link, or `k1s kubectl`.
func RunsKubectl(args []string) bool {
	if len(args) == 0 {
		return false
	}
	return filepath.Base(args[0]) == "kubectl" || (len(args) > 1 && args[1] == "kubectl")
}
