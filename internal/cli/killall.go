package cli

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/k1s-io/k1s/internal/killall"
	"github.com/k1s-io/k1s/internal/server"
)

func killallCommand() *cli.Command {
	return &cli.Command{
		Name:         "killall",
		Usage:        "Stop every k1s process on this host (server, agent, containerd, shims, pods) and remove what they set up; keeps the data directory",
		OnUsageError: usageError,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "data-dir", Aliases: []string{"d"}, Value: server.DefaultDataDir, EnvVars: []string{"K1S_DATA_DIR"}, Usage: "data directory of the k1s to stop"},
		},
		Action: func(c *cli.Context) error {
			w := c.App.Writer
			err := killall.Run(killall.Options{
				DataDir: c.String("data-dir"),
				Report:  func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) },
			})
			if err != nil {
				return fmt.Errorf("killall did not remove everything: %w", err)
			}
			return nil
		},
	}
}
