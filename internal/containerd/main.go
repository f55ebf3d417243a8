// Package containerd runs containerd for a k1s node: its entry points in the multicall binary,
// its generated configuration, the child process, and the import of images.
package containerd

import (
	"context"
	"fmt"
	"os"

	"github.com/containerd/containerd/v2/cmd/containerd/command"
	ctrapp "github.com/containerd/containerd/v2/cmd/ctr/app"

	"github.com/k1s-io/k1s/internal/gotune"
	"github.com/k1s-io/k1s/internal/layout"
)

// Main runs the containerd daemon (the binary was called as `containerd`) and returns the exit
// code. k1s starts it as a child process, never in its own process: containerd installs signal
// handlers of its own.
func Main(args []string) int {
	gotune.Apply()
	go func() {
		if _, err := gotune.Settle(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, "containerd: returning the start's memory to the system:", err, "(harmless: the pages stay mapped)")
		}
	}()
	if err := command.App().Run(context.Background(), args); err != nil {
		fmt.Fprintln(os.Stderr, "containerd:", err)
		return 1
	}
	return 0
}

// CtrMain runs ctr, containerd's client, against k1s's containerd unless told otherwise.
func CtrMain(args []string) int {
	if os.Getenv("CONTAINERD_ADDRESS") == "" {
		os.Setenv("CONTAINERD_ADDRESS", layout.ContainerdSocket)
	}
	if os.Getenv("CONTAINERD_NAMESPACE") == "" {
		os.Setenv("CONTAINERD_NAMESPACE", "k8s.io")
	}
	if err := ctrapp.New().Run(context.Background(), args); err != nil {
		fmt.Fprintln(os.Stderr, "ctr:", err)
		return 1
	}
	return 0
}
