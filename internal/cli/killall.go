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
		Name:         "killall",
		Usage:        "Stop every k1s process on this host (server, agent, containerd, shims, pods) and remove what they set up; keeps the data directory",
		OnUsageError: usageError,
		Flags: []cli.Flag{
			configFlag(),
			&cli.StringFlag{Name: "data-dir", Aliases: []string{"d"}, Value: server.DefaultDataDir, EnvVars: []string{"K1S_DATA_DIR"}, Usage: "data directory of the k1s to stop (default: the config file's, else /var/lib/k1s)"},
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
