package localstorage

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v13/controller"
)

// Provisioner is the cluster side: it creates a PersistentVolume on the node the scheduler
// picked for each claim of a local-path StorageClass. It runs on the server that holds the
// controllers' lease, so the library's own leader election is off.
type Provisioner struct {
	Client func() (kubernetes.Interface, error)
}

func (p *Provisioner) Name() string { return "local-storage provisioner" }

func (p *Provisioner) Run(ctx context.Context) error {
	client, err := p.Client()
	if err != nil {
		return err
	}
	controller.NewProvisionController(ctx, client, ProvisionerName, &provisioner{client: client},
		controller.LeaderElection(false),
		controller.Threadiness(2),
		// Retried without end, with backoff: a node that has not published its directory yet
		// (still starting) is the usual cause.
		controller.FailedProvisionThreshold(0),
	).Run(ctx)
	return ctx.Err()
}

type provisioner struct {
	client kubernetes.Interface
}

func (p *provisioner) Provision(ctx context.Context, opts controller.ProvisionOptions) (*v1.PersistentVolume, controller.ProvisioningState, error) {
	if opts.SelectedNodeName == "" {
		return nil, controller.ProvisioningFinished, fmt.Errorf("StorageClass %s must have volumeBindingMode WaitForFirstConsumer: a local volume is made on the node its pod runs on", opts.StorageClass.Name)
	}
	node, err := p.client.CoreV1().Nodes().Get(ctx, opts.SelectedNodeName, metav1.GetOptions{})
	if err != nil {
		return nil, controller.ProvisioningNoChange, fmt.Errorf("node %s: %w", opts.SelectedNodeName, err)
	}
	reclaim := v1.PersistentVolumeReclaimDelete
	if opts.StorageClass.ReclaimPolicy != nil {
		reclaim = *opts.StorageClass.ReclaimPolicy
	}
	pv, err := NewVolume(opts.PVName, opts.PVC, reclaim, node, node.Annotations[PathAnnotation])
	if err != nil {
		return nil, controller.ProvisioningFinished, err
	}
	return pv, controller.ProvisioningFinished, nil
}

// A claim for volumeMode Block never reaches Provision: the library refuses it with an Event
// ("k1s.io/local-path does not support block volume provisioning"), since provisioner is not a
// controller.BlockProvisioner.

// Delete has nothing to do here: the volume's node removes the directory, and the Finalizer
// keeps the volume until it has.
func (p *provisioner) Delete(context.Context, *v1.PersistentVolume) error { return nil }
