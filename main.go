// Command k1s is Kubernetes in one binary. It is a multicall binary: called as kubectl, ctr or
// containerd it is that program; otherwise it is the k1s command line.
package main

import (
	"os"
	"path/filepath"

	"github.com/k1s-io/k1s/internal/cli"
	"github.com/k1s-io/k1s/internal/containerd"
)

func main() {
	switch filepath.Base(os.Args[0]) {
	case "kubectl":
		os.Exit(cli.RunKubectl(os.Args[1:]))
	case "containerd":
		os.Exit(containerd.Main(os.Args))
	case "ctr":
		os.Exit(containerd.CtrMain(os.Args))
	default:
		os.Exit(cli.Run(os.Args, os.Stdout, os.Stderr))
	}
}
