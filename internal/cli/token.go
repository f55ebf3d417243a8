package cli

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	certutil "k8s.io/client-go/util/cert"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	bootstrapsecrets "k8s.io/cluster-bootstrap/util/secrets"

	"github.com/k1s-io/k1s/internal/join"
	"github.com/k1s-io/k1s/internal/kubeclient"
	"github.com/k1s-io/k1s/internal/layout"
)

func tokenCommand() *cli.Command {
	return &cli.Command{
		Name:            "token",
		Usage:           "Manage join tokens (bootstrap tokens) on a server",
		OnUsageError:    usageError,
		HideHelpCommand: true,
		Subcommands: []*cli.Command{
			{
				Name:         "create",
				Usage:        "Create a join token and print it",
				OnUsageError: usageError,
				Flags: append(serverFlags(),
					&cli.DurationFlag{Name: "ttl", Value: 24 * time.Hour, Usage: "how long the token may be used to join (0: forever)"},
					&cli.StringFlag{Name: "description", Usage: "what the token is for"},
				),
				Action: tokenCreate,
			},
			{
				Name:         "rotate",
				Usage:        "Replace the server's default join token (node-token) with a new one, and delete the old one",
				OnUsageError: usageError,
				Flags:        serverFlags(),
				Action:       tokenRotate,
			},
			{Name: "list", Usage: "List join tokens", OnUsageError: usageError, Flags: serverFlags(), Action: tokenList},
			{Name: "delete", Usage: "Delete join tokens by id", ArgsUsage: "ID...", OnUsageError: usageError, Flags: serverFlags(), Action: tokenDelete},
		},
	}
}

// supervisorClient is k1s's own client (system:masters) of the server whose data directory
// the command acts on, and that server's files.
func supervisorClient(c *cli.Context) (kubernetes.Interface, layout.Server, error) {
	dir, err := dataDir(c)
	if err != nil {
		return nil, layout.Server{}, err
	}
	files := dir.Server()
	restConfig, err := kubeclient.Config(files.SupervisorKubeconfig())
	if err != nil {
		return nil, files, fmt.Errorf("no server credentials in %s (%v): run this on the server, with its --data-dir", dir.Root(), errors.Unwrap(err))
	}
	restConfig.Timeout = 30 * time.Second
	client, err := kubernetes.NewForConfig(restConfig)
	return client, files, err
}

// tokenClient is supervisorClient with the cluster CA, which a token's hash pins.
func tokenClient(c *cli.Context) (kubernetes.Interface, layout.Server, *x509.Certificate, error) {
	client, files, err := supervisorClient(c)
	if err != nil {
		return nil, files, nil, err
	}
	cas, err := certutil.CertsFromFile(files.ServerCA().Cert)
	if err != nil {
		return nil, files, nil, fmt.Errorf("reading the cluster CA: %w", err)
	}
	return client, files, cas[0], nil
}

func tokenCreate(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (see 'k1s token create --help')", c.Args().First())
	}
	if c.Duration("ttl") < 0 {
		return fmt.Errorf("--ttl %s is negative", c.Duration("ttl"))
	}
	client, _, ca, err := tokenClient(c)
	if err != nil {
		return err
	}
	token, err := join.NewToken(ca)
	if err != nil {
		return err
	}
	var expiration metav1.Time
	if ttl := c.Duration("ttl"); ttl > 0 {
		expiration = metav1.NewTime(time.Now().Add(ttl))
	}
	secret := join.BootstrapTokenSecret(token, c.String("description"), expiration)
	if _, err := client.CoreV1().Secrets(metav1.NamespaceSystem).Create(context.Background(), secret, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating the token: %w", err)
	}
	fmt.Fprintln(c.App.Writer, token.String())
	return nil
}

func tokenRotate(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (see 'k1s token rotate --help')", c.Args().First())
	}
	client, files, ca, err := tokenClient(c)
	if err != nil {
		return err
	}
	token, err := join.RotateDefaultToken(context.Background(), client, files.NodeToken(), files.NodeTokenCreated(), ca)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.ErrWriter, "the default join token is new (in %s); the old one no longer joins nodes (joined nodes keep their own credentials)\n", files.NodeToken())
	fmt.Fprintln(c.App.Writer, token.String())
	return nil
}

func tokenList(c *cli.Context) error {
	client, _, err := supervisorClient(c)
	if err != nil {
		return err
	}
	list, err := client.CoreV1().Secrets(metav1.NamespaceSystem).List(context.Background(), metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("type", string(bootstrapapi.SecretTypeBootstrapToken)).String()})
	if err != nil {
		return fmt.Errorf("listing tokens: %w", err)
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
	w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tEXPIRES\tGROUPS\tDESCRIPTION")
	now := time.Now()
	for i := range list.Items {
		s := &list.Items[i]
		expires := "never"
		if left, expired := bootstrapsecrets.GetExpiration(s, now); expired {
			expires = "expired"
		} else if left > 0 {
			expires = bootstrapsecrets.GetData(s, bootstrapapi.BootstrapTokenExpirationKey)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", bootstrapsecrets.GetData(s, bootstrapapi.BootstrapTokenIDKey), expires,
			bootstrapsecrets.GetData(s, bootstrapapi.BootstrapTokenExtraGroupsKey), bootstrapsecrets.GetData(s, bootstrapapi.BootstrapTokenDescriptionKey))
	}
	return w.Flush()
}

func tokenDelete(c *cli.Context) error {
	if c.NArg() == 0 {
		return fmt.Errorf("give the id of the token to delete (see 'k1s token list')")
	}
	for _, id := range c.Args().Slice() {
		if strings.HasPrefix(id, "-") {
			return fmt.Errorf("flags go before the token ids: k1s token delete %s ID", id)
		}
	}
	client, _, err := supervisorClient(c)
	if err != nil {
		return err
	}
	for _, id := range c.Args().Slice() {
		err := client.CoreV1().Secrets(metav1.NamespaceSystem).Delete(context.Background(), bootstrapapi.BootstrapTokenSecretPrefix+id, metav1.DeleteOptions{})
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("no token with id %q (see 'k1s token list')", id)
		}
		if err != nil {
			return fmt.Errorf("deleting token %s: %w", id, err)
		}
		fmt.Fprintf(c.App.Writer, "deleted token %s\n", id)
	}
	return nil
}
