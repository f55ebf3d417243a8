package cli

import (
	"errors"
	"io/fs"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
	componentcli "k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"

	"github.com/k1s-io/k1s/internal/containerd"
	// Imported for its init: before kubectl's packages translate their texts.
	_ "github.com/k1s-io/k1s/internal/cli/kubectli18n"
	"github.com/k1s-io/k1s/internal/layout"
)

func kubectlCommand() *cli.Command {
	return &cli.Command{
		Name:            "kubectl",
		Usage:           "Run kubectl (against the admin kubeconfig unless KUBECONFIG or --kubeconfig says otherwise)",
		SkipFlagParsing: true,
		HideHelp:        true,
		Action: func(c *cli.Context) error {
			code := RunKubectl(c.Args().Slice())
			if code != 0 {
				return cli.Exit("", code)
			}
			return nil
		},
	}
}

func ctrCommand() *cli.Command {
	return &cli.Command{
		Name:            "ctr",
		Usage:           "Run ctr, containerd's client, against the node's containerd (namespace k8s.io)",
		SkipFlagParsing: true,
		HideHelp:        true,
		Action: func(c *cli.Context) error {
			if code := containerd.CtrMain(append([]string{"ctr"}, c.Args().Slice()...)); code != 0 {
				return cli.Exit("", code)
			}
			return nil
		},
	}
}

// RunKubectl runs upstream kubectl with args (without the program name) and returns its exit
// code. Without KUBECONFIG or --kubeconfig it uses the admin kubeconfig a k1s server writes.
func RunKubectl(args []string) int {
	if os.Getenv("KUBECONFIG") == "" && !hasKubeconfigFlag(args) {
		if _, err := os.Stat(layout.DefaultKubeconfig); !errors.Is(err, fs.ErrNotExist) {
			os.Setenv("KUBECONFIG", layout.DefaultKubeconfig)
		}
	}
	os.Args = append([]string{"kubectl"}, args...)
	logs.GlogSetter(kubectlcmd.GetLogVerbosity(os.Args)) //nolint:errcheck // as upstream kubectl's main
	command := kubectlcmd.NewDefaultKubectlCommand()
	command.SetArgs(args)
	if err := componentcli.RunNoErrOutput(command); err != nil {
		// CheckErr prints the error the way kubectl does and exits with kubectl's code.
		kubectlutil.CheckErr(err)
	}
	return 0
}

func hasKubeconfigFlag(args []string) bool {
	for _, a := range args {
		if a == "--kubeconfig" || strings.HasPrefix(a, "--kubeconfig=") {
			return true
		}
	}
	return false
}
