package cli

import (
	"fmt"
	"strings"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"

	"github.com/k1s-io/k1s/internal/server"
)

func secretsEncryptCommand() *cli.Command {
	return &cli.Command{
		Name:            "secrets-encrypt",
		Usage:           "Show or rotate the key Secrets are encrypted with in etcd (on the server, while it runs)",
		OnUsageError:    usageError,
		HideHelpCommand: true,
		Subcommands: []*cli.Command{
			{Name: "status", Usage: "Show whether Secrets are encrypted, with which key, and whether the apiserver uses it", OnUsageError: usageError, Flags: serverFlags(), Action: secretsStatus},
			{Name: "rotate-keys", Usage: "Encrypt every Secret with a new key and drop the old one", OnUsageError: usageError, Flags: serverFlags(), Action: secretsRotateKeys},
		},
	}
}

func secretsStatus(c *cli.Context) error {
	dir, err := dataDir(c)
	if err != nil {
		return err
	}
	path := dir.Server().EncryptionConfig()
	keys, err := server.EncryptionKeys(path)
	if err != nil {
		return err
	}
	out := c.App.Writer
	if len(keys) == 0 {
		fmt.Fprintln(out, "Encryption Status: Disabled (start k1s server with --secrets-encryption to enable it)")
		return nil
	}
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = k.Name
	}
	fmt.Fprintln(out, "Encryption Status: Enabled")
	fmt.Fprintln(out, "Provider: aescbc")
	fmt.Fprintf(out, "Active Key: %s\n", names[0])
	if len(names) > 1 {
		fmt.Fprintf(out, "Older Keys (still read): %s\n", strings.Join(names[1:], ", "))
	}
	fmt.Fprintf(out, "Configuration: %s\n", path)
	loaded := "unknown (the apiserver does not answer: is k1s server running?)"
	if client, _, err := supervisorClient(c); err == nil {
		if ok, err := server.EncryptionConfigLoaded(c.Context, client, path); err == nil {
			loaded = map[bool]string{true: "yes", false: "not yet (it reads the file once a minute)"}[ok]
		}
	}
	fmt.Fprintf(out, "Loaded by the apiserver: %s\n", loaded)
	return nil
}

func secretsRotateKeys(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (see 'k1s secrets-encrypt rotate-keys --help')", c.Args().First())
	}
	client, cfg, err := supervisorClient(c)
	if err != nil {
		return err
	}
	log := logrus.New()
	log.SetOutput(c.App.ErrWriter)
	key, err := server.RotateEncryptionKey(c.Context, client, cfg.EncryptionConfig(), log)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "Secrets are now encrypted with key %s\n", key.Name)
	return nil
}
