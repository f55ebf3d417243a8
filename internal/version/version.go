// Package version reports the version of k1s and of the upstream components linked into it.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	containerdversion "github.com/containerd/containerd/v2/version"
	etcdversion "go.etcd.io/etcd/api/v3/version"
	k8sversion "k8s.io/component-base/version"
)

// Version is k1s's own version, set at build time with -ldflags "-X ...version.Version=...".
var Version = "dev"

const kubernetesModule = "k8s.io/kubernetes"

// String is the multi-line text `k1s --version` prints.
func String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "k1s version %s (%s/%s, %s)\n", Version, runtime.GOOS, Arch(), runtime.Version())
	fmt.Fprintf(&b, "kubernetes %s\n", Kubernetes())
	fmt.Fprintf(&b, "etcd %s\n", etcdversion.Version)
	fmt.Fprintf(&b, "containerd v%s\n", strings.TrimSuffix(containerdversion.Version, "+unknown"))
	return b.String()
}

// Arch is the architecture the binary was built for, with the ARM level on 32-bit ARM
// ("arm64", "armv7"): an armv7 build uses instructions armv6 lacks.
func Arch() string {
	if runtime.GOARCH != "arm" {
		return runtime.GOARCH
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "GOARM" {
				return "armv" + strings.SplitN(s.Value, ",", 2)[0]
			}
		}
	}
	return "arm"
}

// Kubernetes is the Kubernetes version the binary reports to clients; it falls back to the
// linked module's version when the build did not stamp component-base (plain `go build`).
func Kubernetes() string {
	if v := k8sversion.Get().GitVersion; !strings.HasPrefix(v, "v0.0.0") {
		return v
	}
	return moduleVersion(kubernetesModule)
}

func moduleVersion(path string) string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, dep := range info.Deps {
		if dep.Path == path {
			if dep.Replace != nil {
				return dep.Replace.Version
			}
			return dep.Version
		}
	}
	return "not linked"
}
