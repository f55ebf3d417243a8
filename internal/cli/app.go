// Package cli is k1s's command line: commands, flags, the config file and K1S_* environment
// variables. It turns them into the completed configs of the other packages and runs them.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"

	"github.com/k1s-io/k1s/internal/component"
	"github.com/k1s-io/k1s/internal/gotune"
	"github.com/k1s-io/k1s/internal/logging"
	"github.com/k1s-io/k1s/internal/version"
)

// Run runs the k1s command line and returns the process exit code. Errors are printed as one
// line: they are meant for a person, who needs the cause and the fix, not a trace.
func Run(argv []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	if err := app.Run(argv); err != nil {
		var exit cli.ExitCoder
		if errors.As(err, &exit) && exit.Error() == "" {
			return exit.ExitCode()
		}
		fmt.Fprintf(stderr, "k1s: %v\n", err)
		if errors.As(err, &exit) {
			return exit.ExitCode()
		}
		return 1
	}
	return 0
}

func newApp(stdout, stderr io.Writer) *cli.App {
	cli.VersionPrinter = func(c *cli.Context) { fmt.Fprint(c.App.Writer, version.String()) }
	return &cli.App{
		Name:                 "k1s",
		Usage:                "Kubernetes in one small binary",
		Version:              version.Version,
		Writer:               stdout,
		ErrWriter:            stderr,
		EnableBashCompletion: false,
		HideHelpCommand:      true,
		OnUsageError:         usageError,
		Commands: []*cli.Command{
			serverCommand(),
			agentCommand(),
			tokenCommand(),
			secretsEncryptCommand(),
			certificateCommand(),
			etcdSnapshotCommand(),
			etcdCommand(),
			checkConfigCommand(),
			kubectlCommand(),
			ctrCommand(),
			killallCommand(),
		},
	}
}

// usageError replaces urfave's usage dump with one line that says where help is.
func usageError(c *cli.Context, err error, _ bool) error {
	return fmt.Errorf("%w (see '%s --help')", err, c.Command.HelpName)
}

// signalContext is the process's one signal handler: SIGINT or SIGTERM cancels the context.
func signalContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		sig := <-ch
		cancel(fmt.Errorf("received %v", sig))
		// A second signal while stopping means the user wants out now.
		sig = <-ch
		fmt.Fprintf(os.Stderr, "k1s: received %v again; exiting without a clean stop\n", sig)
		os.Exit(1)
	}()
	return ctx, func() { signal.Stop(ch); cancel(context.Canceled) }
}

// systemdNotifier tells the service manager about k1s's state; without NOTIFY_SOCKET (not a
// Type=notify service) it does nothing.
type systemdNotifier struct {
	logs   *logging.Logs
	socket string
}

// newSystemdNotifier takes NOTIFY_SOCKET out of the environment: the kubelet, run in-process,
// would otherwise report READY=1 as soon as it starts, before the node is registered.
func newSystemdNotifier(logs *logging.Logs) *systemdNotifier {
	n := &systemdNotifier{logs: logs, socket: os.Getenv("NOTIFY_SOCKET")}
	os.Unsetenv("NOTIFY_SOCKET")
	return n
}

func (n *systemdNotifier) notify(state string) {
	if n.socket == "" {
		return
	}
	// SdNotify reads the socket from the environment and, told to, removes it again.
	os.Setenv("NOTIFY_SOCKET", n.socket)
	if _, err := daemon.SdNotify(true, state); err != nil {
		n.logs.Logger.Warnf("telling systemd %q: %v", state, err)
	}
}

// runComponents runs a server's or agent's components until a signal or a component's failure,
// then stops them in reverse order.
func runComponents(logs *logging.Logs, components []component.Component) error {
	ctx, stop := signalContext()
	defer stop()
	systemd := newSystemdNotifier(logs)
	manager := &component.Manager{
		Log: logs.Logger,
		// Under a systemd unit of Type=notify the service becomes active only now, so
		// `systemctl start k1s` returns once the cluster (and the node) is usable.
		OnReady: func() {
			systemd.notify(daemon.SdNotifyReady)
			go settle(ctx, logs.Logger)
		},
		OnStop: func() {
			systemd.notify(daemon.SdNotifyStopping)
			logs.Stopping()
		},
	}
	if err := manager.Run(ctx, components...); err != nil {
		return err
	}
	logs.Logger.Info("k1s stopped")
	return nil
}

// settle gives the start's memory back once the process has been ready for a while.
func settle(ctx context.Context, log logrus.FieldLogger) {
	released, err := gotune.Settle(ctx)
	if err != nil {
		log.Warnf("returning the start's memory to the system: %v (harmless: the pages stay mapped)", err)
		return
	}
	if released > 0 {
		log.Debugf("returned the start's garbage; released %d MB of the executable's resident pages", released>>20)
	}
}
