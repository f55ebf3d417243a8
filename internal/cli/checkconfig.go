package cli

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/k1s-io/k1s/internal/cis"
	"github.com/k1s-io/k1s/internal/host"
	"github.com/k1s-io/k1s/internal/layout"
)

func checkConfigCommand() *cli.Command {
	return &cli.Command{
		Name:         "check-config",
		Usage:        "Check that this host can run k1s (exit code: the number of failures); with --cis, report the CIS Kubernetes Benchmark checks against k1s's recorded configuration (exit code: failed checks plus automated checks it cannot verify)",
		OnUsageError: usageError,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "cis", Usage: "report the CIS Kubernetes Benchmark checks for the node of --data-dir, from the configuration its components were last started with"},
			configFlag(),
			dataDirFlag("with --cis: the data directory k1s runs with (default: the config file's, else " + layout.DefaultDataDir + ")"),
			writeKubeconfigFlag("with --cis: the admin kubeconfig k1s server writes"),
		},
		Action: checkConfig,
	}
}

func checkConfig(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (see 'k1s check-config --help')", c.Args().First())
	}
	var failed int
	if c.Bool("cis") {
		dir, err := dataDir(c)
		if err != nil {
			return err
		}
		results, err := cis.Run(cis.Options{DataDir: dir.Root(), AdminKubeconfig: c.String("write-kubeconfig")})
		if err != nil {
			return err
		}
		failed = cis.Print(c.App.Writer, results)
	} else {
		failed = host.PrintChecks(c.App.Writer, host.CheckHost(host.CheckOptions{}))
	}
	if failed > 0 {
		return cli.Exit("", min(failed, 125))
	}
	return nil
}
