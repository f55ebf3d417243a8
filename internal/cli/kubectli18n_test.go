package cli

import (
	"testing"

	"github.com/chai2010/gettext-go"
)

// kubectl's packages, linked into this test binary as into k1s, translate their texts while Go
// initialises them: kubectli18n's hook must have come first, so that no catalogue was loaded.
func TestKubectlCatalogueNotLoadedAtInit(t *testing.T) {
	if domain := gettext.SetDomain(""); domain == "k8s" {
		t.Fatal("kubectl's catalogue was loaded while Go initialised kubectl's packages: kubectli18n's hook came too late")
	}
}
