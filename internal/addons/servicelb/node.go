package servicelb

import (
	"context"
	"strings"

	"github.com/sirupsen/logrus"
	"k8s.io/client-go/kubernetes"

	"github.com/k1s-io/k1s/internal/kubeclient"
)

// PublishExternalIP records the node's --node-external-ip (or its absence) on its Node, where
// the controller prefers it to the node's InternalIP. It returns once done.
func PublishExternalIP(ctx context.Context, client func() (kubernetes.Interface, error), node string, ips []string, log logrus.FieldLogger) error {
	c, err := client()
	if err != nil {
		return err
	}
	var value *string
	if len(ips) > 0 {
		joined := strings.Join(ips, ",")
		value = &joined
	}
	return kubeclient.AnnotateNode(ctx, c, node, map[string]*string{ExternalIPAnnotation: value}, log)
}
