package cli

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/k1s-io/k1s/internal/killall"
	"github.com/k1s-io/k1s/internal/layout"
)

// exitNotDataDir is killall's exit status when the directory is not a k1s data directory and
// so nothing was touched: the uninstall script tells it from a failed clean-up, after which
// removing the data directory could reach into mounts left below it.
const exitNotDataDir = 3

func killallCommand() *cli.Command {
	return &cli.Command{
		Name:  "killall",
		Usage: "Stop the k1s server or agent of one data directory (with its containerd, shims and pods) and remove what it set up; keeps the data directory",
		Description: "Acts on the node whose data directory --data-dir names (it must hold k1s.lock) and leaves other k1s nodes on the host alone. " +
			"Interfaces, routes and firewall rules are removed in the network namespace killall runs in: for an agent in its own namespaces, run it there (nsenter). " +
			"Exits with status 3, having touched nothing, when the directory is not a k1s data directory.\n\n" +
			"With --print-paths it touches nothing and needs no root: it prints the absolute data directory it would act on, " +
			"then, one per line, the paths an uninstall removes whole (install.sh's uninstall script asks this).",
		OnUsageError: usageError,
		Flags: []cli.Flag{
			configFlag(),
			dataDirFlag("data directory of the k1s server or agent to stop (default: the config file's, else " + layout.DefaultDataDir + ")"),
			&cli.BoolFlag{Name: "print-paths", Usage: "print the data directory, then the paths an uninstall removes, one per line; stop and remove nothing"},
		},
		Action: func(c *cli.Context) error {
			dir, err := dataDir(c)
			if err != nil {
				return err
			}
			dataDir := dir.Root()
			w := c.App.Writer
			if c.Bool("print-paths") {
				return printUninstallPaths(c, dataDir)
			}
			err = killall.Run(killall.Options{
				DataDir: dataDir,
				Report:  func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) },
			})
			var notDataDir *killall.NotDataDirError
			if errors.As(err, &notDataDir) {
				// Nothing was touched. urfave/cli exits on an ExitCoder, printing its message
				// without k1s's prefix: print it here, as app.Run does every other error.
				fmt.Fprintf(c.App.ErrWriter, "k1s: %v\n", err)
				return cli.Exit("", exitNotDataDir)
			}
			if err != nil {
				return fmt.Errorf("killall did not remove everything: %w", err)
			}
			return nil
		},
	}
}

// printUninstallPaths prints the data directory and then layout.UninstallPaths, one per line.
// The directory need not be a k1s data directory: an uninstall after a first start that failed
// before k1s locked it still removes it.
func printUninstallPaths(c *cli.Context, dataDir string) error {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return fmt.Errorf("resolving data directory %s: %w", dataDir, err)
	}
	// A line break would split one path into two for the script reading the lines.
	if strings.ContainsAny(abs, "\n\r") {
		return fmt.Errorf("data directory %q contains a line break: give a --data-dir without one", abs)
	}
	var b strings.Builder
	b.WriteString(abs + "\n")
	for _, p := range layout.UninstallPaths(layout.DataDir(abs)) {
		b.WriteString(p + "\n")
	}
	_, err = fmt.Fprint(c.App.Writer, b.String())
	return err
}
