package servicelb

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
)

// Controller keeps every handled Service's status.loadBalancer.ingress on the addresses Decide
// gives it. It runs on the server that holds the controllers' lease.
type Controller struct {
	Client func() (kubernetes.Interface, error)
	// Reserved are the ports k1s listens on at nodes' addresses.
	Reserved map[Port]string
	Log      logrus.FieldLogger
}

func (c *Controller) Name() string { return "servicelb" }

// settle lets a burst of changes (a node's status, a Service's endpoints) make one pass.
const settle = 100 * time.Millisecond

func (c *Controller) Run(ctx context.Context) error {
	client, err := c.Client()
	if err != nil {
		return err
	}
	factory := informers.NewSharedInformerFactory(client, 0)
	services := factory.Core().V1().Services()
	nodes := factory.Core().V1().Nodes()
	endpointSlices := factory.Discovery().V1().EndpointSlices()
	changed := make(chan struct{}, 1)
	poke := func(any) {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	handler := cache.ResourceEventHandlerFuncs{AddFunc: poke, UpdateFunc: func(_, o any) { poke(o) }, DeleteFunc: poke}
	for _, inf := range []cache.SharedIndexInformer{services.Informer(), nodes.Informer(), endpointSlices.Informer()} {
		if _, err := inf.AddEventHandler(handler); err != nil {
			return err
		}
	}
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	defer broadcaster.Shutdown()
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	r := &reconciler{
		client:   client,
		services: services.Lister(), nodes: nodes.Lister(), slices: endpointSlices.Lister(),
		reserved: c.Reserved,
		recorder: broadcaster.NewRecorder(scheme.Scheme, v1.EventSource{Component: "servicelb"}),
		reported: map[string]string{},
		log:      c.Log,
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	for _, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return ctx.Err()
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(settle):
		}
		if err := r.sync(ctx); err != nil {
			c.Log.Warnf("servicelb: %v (retrying)", err)
			time.AfterFunc(time.Second, func() { poke(nil) })
		}
	}
}

type reconciler struct {
	client   kubernetes.Interface
	services interface {
		List(labels.Selector) ([]*v1.Service, error)
	}
	nodes interface {
		List(labels.Selector) ([]*v1.Node, error)
	}
	slices interface {
		List(labels.Selector) ([]*discoveryv1.EndpointSlice, error)
	}
	reserved map[Port]string
	recorder record.EventRecorder
	// reported is the conflict last reported per Service, so that each is reported once.
	reported map[string]string
	log      logrus.FieldLogger
}

func (r *reconciler) sync(ctx context.Context) error {
	services, err := r.services.List(labels.Everything())
	if err != nil {
		return err
	}
	nodes, err := r.nodes.List(labels.Everything())
	if err != nil {
		return err
	}
	endpointSlices, err := r.slices.List(labels.Everything())
	if err != nil {
		return err
	}
	plan := Decide(Input{Services: services, Nodes: nodes, LocalNodes: localNodes(endpointSlices), Reserved: r.reserved})
	var errs []string
	for _, svc := range services {
		if !Handled(svc) {
			continue
		}
		key := Key(svc)
		r.report(svc, plan.Conflicts[key], len(plan.Ingress[key]) == 0)
		if err := r.setIngress(ctx, svc, plan.Ingress[key]); err != nil {
			errs = append(errs, fmt.Sprintf("Service %s: %v", key, err))
		}
	}
	for key := range r.reported {
		if _, ok := plan.Ingress[key]; !ok {
			delete(r.reported, key)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// report tells the Service's owner, once per change, which nodes it could not have and why.
func (r *reconciler) report(svc *v1.Service, conflicts []string, pending bool) {
	key := Key(svc)
	text := strings.Join(conflicts, "; ")
	if r.reported[key] == text {
		return
	}
	r.reported[key] = text
	if text == "" {
		return
	}
	if pending {
		r.recorder.Eventf(svc, v1.EventTypeWarning, "PortInUse", "no node can serve it: %s", text)
		return
	}
	r.recorder.Eventf(svc, v1.EventTypeWarning, "PortInUse", "not served by every node: %s", text)
}

func (r *reconciler) setIngress(ctx context.Context, svc *v1.Service, addresses []string) error {
	vip := v1.LoadBalancerIPModeVIP
	var ingress []v1.LoadBalancerIngress
	for _, a := range addresses {
		ingress = append(ingress, v1.LoadBalancerIngress{IP: a, IPMode: &vip})
	}
	if equalIngress(svc.Status.LoadBalancer.Ingress, ingress) {
		return nil
	}
	svc = svc.DeepCopy()
	svc.Status.LoadBalancer.Ingress = ingress
	_, err := r.client.CoreV1().Services(svc.Namespace).UpdateStatus(ctx, svc, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err == nil {
		r.log.Debugf("servicelb: Service %s at %v", Key(svc), addresses)
	}
	return err
}

func equalIngress(a, b []v1.LoadBalancerIngress) bool {
	return slices.EqualFunc(a, b, func(x, y v1.LoadBalancerIngress) bool {
		return x.IP == y.IP && x.Hostname == y.Hostname && (x.IPMode == nil) == (y.IPMode == nil) && (x.IPMode == nil || *x.IPMode == *y.IPMode)
	})
}

// localNodes are, per Service, the nodes with a ready endpoint.
func localNodes(endpointSlices []*discoveryv1.EndpointSlice) map[string][]string {
	out := map[string][]string{}
	for _, s := range endpointSlices {
		name := s.Labels[discoveryv1.LabelServiceName]
		if name == "" {
			continue
		}
		key := s.Namespace + "/" + name
		for _, e := range s.Endpoints {
			if e.NodeName == nil || (e.Conditions.Ready != nil && !*e.Conditions.Ready) {
				continue
			}
			if !slices.Contains(out[key], *e.NodeName) {
				out[key] = append(out[key], *e.NodeName)
			}
		}
	}
	return out
}

// Cleanup is what runs when servicelb is disabled: Services it served lose the node addresses
// it gave them (another load balancer's addresses are left alone). Then it idles.
type Cleanup struct {
	Client func() (kubernetes.Interface, error)
	Log    logrus.FieldLogger
}

func (c *Cleanup) Name() string { return "servicelb removal" }

func (c *Cleanup) Run(ctx context.Context) error {
	client, err := c.Client()
	if err != nil {
		return err
	}
	nodeList, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	var ours []string
	for i := range nodeList.Items {
		ours = append(ours, address(&nodeList.Items[i]))
	}
	list, err := client.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for i := range list.Items {
		svc := &list.Items[i]
		ingress := svc.Status.LoadBalancer.Ingress
		if !Handled(svc) || len(ingress) == 0 || slices.ContainsFunc(ingress, func(in v1.LoadBalancerIngress) bool { return !slices.Contains(ours, in.IP) }) {
			continue
		}
		svc.Status.LoadBalancer.Ingress = nil
		if _, err := client.CoreV1().Services(svc.Namespace).UpdateStatus(ctx, svc, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("clearing Service %s's addresses: %w", Key(svc), err)
		}
		c.Log.Infof("servicelb is disabled: Service %s no longer has the nodes' addresses", Key(svc))
	}
	<-ctx.Done()
	return nil
}
