package agent

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/k1s-io/k1s/internal/agent/loadbalancer"
	"github.com/k1s-io/k1s/internal/component"
	"github.com/k1s-io/k1s/internal/kubeclient"
	"github.com/k1s-io/k1s/internal/network"
)

// prepareLoadBalancer gives the node its API load balancer: the kubelet, kube-proxy and the
// pod network reach the API through it, and it fails over between the cluster's servers,
// starting from --server (a server's own node: its own apiserver). A single server's node has
// none.
func (a *Agent) prepareLoadBalancer() (*network.ListenPort, error) {
	cfg := a.cfg
	if cfg.WithoutLoadBalancer {
		return nil, nil
	}
	u, err := url.Parse(cfg.ServerURL)
	if err != nil {
		return nil, err
	}
	server := u.Host
	if u.Port() == "" {
		server = net.JoinHostPort(u.Hostname(), "443")
	}
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.LBServerPort))
	if a.lb, err = loadbalancer.New(loadbalancer.Config{Listen: listen, Default: server, StateFile: cfg.files.LoadBalancerServers(), Log: cfg.Log}); err != nil {
		return nil, fmt.Errorf("the API load balancer: %w", err)
	}
	return &network.ListenPort{Host: "127.0.0.1", Port: strconv.Itoa(cfg.LBServerPort), Owner: "the API load balancer", Flag: "--lb-server-port"}, nil
}

// apiURL is where the node's components reach the API.
func (a *Agent) apiURL() string {
	if a.lb != nil {
		return a.lb.URL()
	}
	return a.cfg.ServerURL
}

// loadBalancerComponents are the load balancer (first, before the join) and the watch that
// keeps its servers those of the kubernetes Service (after it).
func (a *Agent) loadBalancerComponents() (first, afterJoin []component.Component) {
	if a.lb == nil {
		return nil, nil
	}
	return []component.Component{component.NewFunc("API load balancer", a.lb.Serve, nil)},
		[]component.Component{component.NewFunc("API server list", a.watchServers, nil)}
}

// watchServers keeps the load balancer's servers those the kubernetes Service lists: every
// ready apiserver of the cluster.
func (a *Agent) watchServers(ctx context.Context) error {
	client, err := kubeclient.New(a.cfg.files.KubeletKubeconfig())
	if err != nil {
		return err
	}
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace("default"),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = discoveryv1.LabelServiceName + "=kubernetes" }))
	endpointSlices := factory.Discovery().V1().EndpointSlices()
	update := func(any) {
		list, err := endpointSlices.Lister().List(labels.Everything())
		if err != nil {
			return
		}
		if servers := apiServers(list); len(servers) > 0 {
			if err := a.lb.SetServers(servers); err != nil {
				a.cfg.Log.Warnf("saving the API servers for the next start: %v", err)
			}
		}
	}
	if _, err := endpointSlices.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: update, UpdateFunc: func(_, o any) { update(o) }, DeleteFunc: update,
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	<-ctx.Done()
	factory.Shutdown()
	return nil
}

// apiServers are the host:port of the ready endpoints of the kubernetes Service's slices.
func apiServers(list []*discoveryv1.EndpointSlice) []string {
	var out []string
	for _, s := range list {
		var port int32
		for _, p := range s.Ports {
			if p.Port != nil && (p.Name == nil || *p.Name == "https") {
				port = *p.Port
			}
		}
		if port == 0 {
			continue
		}
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && !*e.Conditions.Ready {
				continue
			}
			for _, addr := range e.Addresses {
				hp := net.JoinHostPort(addr, strconv.Itoa(int(port)))
				if !slices.Contains(out, hp) {
					out = append(out, hp)
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// pointKubeconfigAt makes the kubeconfig at path use server (a node that joined before it had
// a load balancer, or with another --lb-server-port).
func pointKubeconfigAt(path, server string) error {
	kc, err := clientcmd.LoadFromFile(path)
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	changed := false
	for _, c := range kc.Clusters {
		if c.Server != server {
			c.Server, changed = server, true
		}
	}
	if !changed {
		return nil
	}
	return clientcmd.WriteToFile(*kc, path)
}
