package controllers

import (
	"context"
	"os"
	"sync/atomic"

	"k8s.io/client-go/kubernetes"

	"github.com/k1s-io/k1s/internal/join"
)

// ClusterInfoPublisher publishes what every joining node reads: the cluster CA and the
// apiserver's address (cluster-info, which the bootstrap signer signs for every token) and the
// settings every node shares. Run by the server that holds the lease, servers never fight over
// the published address.
type ClusterInfoPublisher struct {
	Client func() (kubernetes.Interface, error)
	// CAFile is the cluster CA's certificate; ServerURL the apiserver address nodes join.
	CAFile    string
	ServerURL string
	Settings  join.NodeConfig

	published atomic.Bool
}

// Name implements Controller.
func (p *ClusterInfoPublisher) Name() string { return "cluster-info publisher" }

// Initialized implements Initializer: the first publication is done (a server's own node
// joins after it).
func (p *ClusterInfoPublisher) Initialized() bool { return p.published.Load() }

// Run publishes, then waits until ctx ends.
func (p *ClusterInfoPublisher) Run(ctx context.Context) error {
	client, err := p.Client()
	if err != nil {
		return err
	}
	caPEM, err := os.ReadFile(p.CAFile)
	if err != nil {
		return err
	}
	if err := join.PublishClusterInfo(ctx, client, p.ServerURL, caPEM); err != nil {
		return err
	}
	if err := join.PublishNodeConfig(ctx, client, p.Settings); err != nil {
		return err
	}
	p.published.Store(true)
	<-ctx.Done()
	return nil
}
