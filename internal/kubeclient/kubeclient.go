// Package kubeclient is the one way k1s builds a Kubernetes client from a kubeconfig file.
package kubeclient

import (
	"fmt"
	"sync"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// UserAgent names k1s's own requests in the apiserver's logs and audit log.
const UserAgent = "k1s"

// Config loads a client configuration from kubeconfig, naming the file in its error.
func Config(kubeconfig string) (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", kubeconfig, err)
	}
	cfg.UserAgent = UserAgent
	return cfg, nil
}

// New returns a clientset for kubeconfig.
func New(kubeconfig string) (kubernetes.Interface, error) {
	cfg, err := Config(kubeconfig)
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

// Lazy is a client whose kubeconfig is read on first use: components are built before the
// credentials they will use exist.
type Lazy struct {
	kubeconfig string
	once       sync.Once
	config     *rest.Config
	client     kubernetes.Interface
	err        error
}

// NewLazy returns a client of kubeconfig, loaded on first use.
func NewLazy(kubeconfig string) *Lazy { return &Lazy{kubeconfig: kubeconfig} }

func (l *Lazy) load() {
	l.once.Do(func() {
		if l.config, l.err = Config(l.kubeconfig); l.err != nil {
			return
		}
		l.client, l.err = kubernetes.NewForConfig(l.config)
	})
}

// Client returns the clientset.
func (l *Lazy) Client() (kubernetes.Interface, error) {
	l.load()
	return l.client, l.err
}

// RESTConfig returns the client configuration.
func (l *Lazy) RESTConfig() (*rest.Config, error) {
	l.load()
	return l.config, l.err
}
