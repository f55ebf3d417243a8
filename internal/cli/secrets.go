package cli

import (
	"fmt"
	"strings"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"

	"github.com/k1s-io/k1s/internal/encryption"
	"github.com/k1s-io/k1s/internal/server"
)

func secretsEncryptCommand() *cli.Command {
	return &cli.Command{
		Name:            "secrets-encrypt",
		Usage:           "Show or rotate the key Secrets are encrypted with in etcd (on the server, while it runs)",
		OnUsageError:    usageError,
		HideHelpCommand: true,
		Subcommands: []*cli.Command{
			{Name: "status", Usage: "Show whether Secrets are encrypted, with which provider and key, and whether the apiserver uses it", OnUsageError: usageError, Flags: serverFlags(), Action: secretsStatus},
			{Name: "rotate-keys", Usage: "Encrypt every Secret with a new key and drop the old one (one run at a time: a second waits for the first)", OnUsageError: usageError,
				Flags:  append(serverFlags(), &cli.StringFlag{Name: "provider", Usage: "provider of the new key: secretbox or aescbc (default: the current key's)"}),
				Action: secretsRotateKeys},
		},
	}
}

func secretsStatus(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (see 'k1s secrets-encrypt status --help')", c.Args().First())
	}
	dir, err := dataDir(c)
	if err != nil {
		return err
	}
	path := dir.Server().EncryptionConfig()
	cfg, exists, err := encryption.Read(path)
	if err != nil {
		return err
	}
	out := c.App.Writer
	if !exists {
		fmt.Fprintln(out, "Encryption Status: Disabled (start k1s server with --secrets-encryption to enable it)")
		return nil
	}
	active := cfg.Active()
	fmt.Fprintln(out, "Encryption Status: Enabled")
	fmt.Fprintf(out, "Provider: %s\n", active.Provider)
	fmt.Fprintf(out, "Active Key: %s\n", active.Name)
	if len(cfg.Keys) > 1 {
		older := make([]string, 0, len(cfg.Keys)-1)
		for _, k := range cfg.Keys[1:] {
			older = append(older, k.String())
		}
		fmt.Fprintf(out, "Older Keys (still read): %s\n", strings.Join(older, ", "))
	}
	fmt.Fprintf(out, "Configuration: %s\n", path)
	loaded := "unknown (the apiserver does not answer: is k1s server running?)"
	if client, _, err := supervisorClient(c); err == nil {
		if ok, err := server.EncryptionConfigLoaded(c.Context, client, path); err == nil {
			loaded = map[bool]string{true: "yes", false: "not yet (it re-reads the file every few seconds)"}[ok]
		}
	}
	fmt.Fprintf(out, "Loaded by the apiserver: %s\n", loaded)
	return nil
}

func secretsRotateKeys(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (see 'k1s secrets-encrypt rotate-keys --help')", c.Args().First())
	}
	var provider encryption.Provider
	if c.IsSet("provider") {
		var err error
		if provider, err = encryption.ParseProvider("--provider", c.String("provider")); err != nil {
			return err
		}
	}
	client, files, err := supervisorClient(c)
	if err == nil && fileExists(files.EtcdClustered()) {
		return fmt.Errorf("rotate-keys: the Secrets encryption key is shared by every server of this cluster, and rotating it on one server is not supported yet")
	}
	if err != nil {
		return err
	}
	log := logrus.New()
	log.SetOutput(c.App.ErrWriter)
	key, err := server.RotateEncryptionKey(c.Context, client, files, provider, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "Secrets are now encrypted with key %s (%s)\n", key.Name, key.Provider)
	return nil
}
