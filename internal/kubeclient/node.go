package kubeclient

import (
	"context"
	"encoding/json"
	"time"

	"github.com/sirupsen/logrus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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
	return wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := client.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, patch, metav1.PatchOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			log.Debugf("annotating node %s: %v (retrying)", node, err)
		}
		return err == nil, nil
	})
}
