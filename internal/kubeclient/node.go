package kubeclient

import (
	"context"
	"encoding/json"
	"time"

	"github.com/sirupsen/logrus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// AnnotateNode sets (or, for a nil value, removes) annotations on the node's own Node object,
// where add-ons publish what the node knows and the cluster side reads it. It retries until
// ctx ends: the kubelet may not have registered the node yet.
func AnnotateNode(ctx context.Context, client kubernetes.Interface, node string, annotations map[string]*string, log logrus.FieldLogger) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": annotations}})
	if err != nil {
		return err
	}
	return Retry(ctx, log, "annotating node "+node, func(ctx context.Context) error {
		_, err := client.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, patch, metav1.PatchOptions{})
		return err
	})
}

// Retry calls try every second until it succeeds, or ctx ends (its only error). A failure is
// expected there — a starting node waiting for its Node to be registered, or for an add-on's
// RBAC the server has not applied yet — so it is a debug line ("<what>: <error> (retrying)"),
// not a warning.
func Retry(ctx context.Context, log logrus.FieldLogger, what string, try func(context.Context) error) error {
	return wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		err := try(ctx)
		if err != nil {
			log.Debugf("%s: %v (retrying)", what, err)
		}
		return err == nil, nil
	})
}
