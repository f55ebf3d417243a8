package cli

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/k1s-io/k1s/internal/datadir"
	"github.com/k1s-io/k1s/internal/pki"
	"github.com/k1s-io/k1s/internal/server"
)

func certificateCommand() *cli.Command {
	return &cli.Command{
		Name:            "certificate",
		Usage:           "Manage the control plane's certificates",
		OnUsageError:    usageError,
		HideHelpCommand: true,
		Subcommands: []*cli.Command{{
			Name:         "rotate",
			Usage:        "Issue the control plane's certificates again, with new keys (all, or those of --service); a running server does it at once, a stopped one at its next start",
			OnUsageError: usageError,
			Flags: append(serverFlags(),
				&cli.StringSliceFlag{Name: "service", Aliases: []string{"s"}, Usage: "only this service's certificates (repeatable): " + fmt.Sprint(server.ServiceNames())},
			),
			Action: certificateRotate,
		}},
	}
}

func certificateRotate(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (see 'k1s certificate rotate --help')", c.Args().First())
	}
	dir, err := dataDir(c)
	if err != nil {
		return err
	}
	if _, err := os.Stat(dir.Lock()); err != nil {
		return fmt.Errorf("%s is not a k1s server's data directory (%v): give the --data-dir the server runs with", dir.Root(), errors.Unwrap(err))
	}
	services := c.StringSlice("service")
	clustered := fileExists(dir.Server().EtcdClustered())
	if len(services) == 0 {
		services = server.ServiceNames()
		if clustered {
			// Every server signs and verifies with the one shared key.
			services = slices.DeleteFunc(services, func(s string) bool { return s == pki.ServiceAccountService })
		}
	}
	if clustered && slices.Contains(services, pki.ServiceAccountService) {
		return fmt.Errorf("--service %s: the service-account key is shared by every server of this cluster, and rotating it on one server is not supported yet", pki.ServiceAccountService)
	}
	request := dir.Server().RotateRequest()
	if err := server.RequestCertificateRotation(request, services); err != nil {
		return err
	}
	if !datadir.Held(dir.Root()) {
		fmt.Fprintf(c.App.Writer, "k1s is not running on %s: the certificates of %v are issued again when it starts\n", dir.Root(), services)
		return nil
	}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if !server.RotationPending(request) {
			if now := slices.DeleteFunc(slices.Clone(services), func(s string) bool { return s == pki.ServiceAccountService }); len(now) > 0 {
				fmt.Fprintf(c.App.Writer, "rotated the certificates of %v; the components load them without a restart\n", now)
			}
			if slices.Contains(services, pki.ServiceAccountService) {
				fmt.Fprintf(c.App.Writer, "the service-account signing key is replaced at the next start of k1s (the apiserver reads it only when it starts); tokens signed with the old key stay valid until they expire\n")
			}
			return nil
		}
		time.Sleep(time.Second)
	}
	return fmt.Errorf("the running server did not rotate the certificates within a minute; see its log (the request stays in %s)", request)
}
