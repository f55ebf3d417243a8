package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/k1s-io/k1s/internal/killall"
	"github.com/k1s-io/k1s/internal/server"
)

func killallCommand() *cli.Command {
	return &cli.Command{
		Name:  "killall",
		Usage: "Stop the k1s server or agent of one data directory (with its containerd, shims and pods) and remove what it set up; keeps the data directory",
		Description: "Acts on the node whose data directory --data-dir names (it must hold k1s.lock) and leaves other k1s nodes on the host alone. " +
			"Interfaces, routes and firewall rules are removed in the network namespace killall runs in: for an agent in its own namespaces, run it there (nsenter).",
		OnUsageError: usageError,
		Flags: []cli.Flag{
			configFlag(),
			&cli.StringFlag{Name: "data-dir", Aliases: []string{"d"}, Value: server.DefaultDataDir, EnvVars: []string{"K1S_DATA_DIR"}, Usage: "data directory of the k1s server or agent to stop (default: the config file's, else /var/lib/k1s)"},
		},
		Action: func(c *cli.Context) error {
			dataDir, err := killallDataDir(c)
			if err != nil {
				return err
			}
			w := c.App.Writer
			err = killall.Run(killall.Options{
				DataDir: dataDir,
				Report:  func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) },
			})
			var notDataDir *killall.NotDataDirError
			if errors.As(err, &notDataDir) {
				return err // nothing was touched
			}
			if err != nil {
				return fmt.Errorf("killall did not remove everything: %w", err)
			}
			return nil
		},
	}
}

// killallDataDir is --data-dir, else the server's config file's data-dir (killall takes
// only that key of it), else the default.
func killallDataDir(c *cli.Context) (string, error) {
	if c.IsSet("data-dir") {
		return c.String("data-dir"), nil
	}
	data, err := os.ReadFile(c.String("config"))
	if errors.Is(err, fs.ErrNotExist) && !c.IsSet("config") {
		return c.String("data-dir"), nil
	}
	if err != nil {
		return "", fmt.Errorf("cannot read config file %s: %w", c.String("config"), err)
	}
	values, err := parseConfigFile(data)
	if err != nil {
		return "", fmt.Errorf("config file %s is malformed: %w", c.String("config"), err)
	}
	if d := values["data-dir"]; len(d) == 1 {
		return d[0], nil
	}
	return c.String("data-dir"), nil
}
