// Package metrics is the metrics-server add-on: the upstream metrics-server (the
// metrics.k8s.io API that `kubectl top` and HorizontalPodAutoscalers read), run in-process by
// the server that holds the controllers' lease. It scrapes each kubelet's /metrics/resource
// with a client certificate of its own and verifies the kubelets' serving certificates
// against their CA. The apiserver's aggregator reaches it through the add-on's selectorless
// Service, whose one endpoint this controller points at its own node IP.
package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	openapinamer "k8s.io/apiserver/pkg/endpoints/openapi"
	genericapiserver "k8s.io/apiserver/pkg/server"
	discoveryv1ac "k8s.io/client-go/applyconfigurations/discovery/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/client-go/kubernetes"
	apiregv1ac "k8s.io/kube-aggregator/pkg/client/applyconfiguration/apiregistration/v1"
	"k8s.io/kube-openapi/pkg/common"
	openapiutil "k8s.io/kube-openapi/pkg/util"
	"k8s.io/kube-openapi/pkg/validation/spec"
	"sigs.k8s.io/metrics-server/cmd/metrics-server/app/options"
	"sigs.k8s.io/metrics-server/pkg/api"
	generatedopenapi "sigs.k8s.io/metrics-server/pkg/api/generated/openapi"

	"github.com/k1s-io/k1s/internal/args"
	"github.com/k1s-io/k1s/internal/layout"
	"github.com/k1s-io/k1s/internal/pki"
)

// The add-on's objects (manifests/metrics-server.yaml).
const (
	Namespace      = metav1.NamespaceSystem
	ServiceName    = "metrics-server"
	APIServiceName = "v1beta1.metrics.k8s.io"
	// PortName names the Service's port and its endpoints' port: the aggregator matches them.
	PortName = "https"
	// ServingName is the name the aggregator verifies the serving certificate for
	// (<service>.<namespace>.svc, whatever address it dials).
	ServingName = ServiceName + "." + Namespace + ".svc"
	// FieldManager owns the fields this controller applies (the endpoints, the caBundle);
	// the deployer owns the rest of the manifest and leaves them alone.
	FieldManager   = "k1s-metrics-server"
	managedBy      = "metrics-server.k1s.io"
	apiServicePath = "/apis/apiregistration.k8s.io/v1/apiservices/" + APIServiceName
)

const (
	// MetricResolution is the scrape interval, upstream's own manifest's value: the HPA
	// controller syncs every 15s, and a kubelet computes its resource metrics from stats it
	// keeps anyway, so a longer interval saves little and makes `kubectl top` wait longer
	// (pods need two scrapes for a CPU rate).
	MetricResolution = 15 * time.Second
	// resync is how often the endpoints and caBundle are applied again: they return within
	// this time after someone deletes them or the deployer recreates their objects.
	resync = 30 * time.Second
	// pollObjects is how often Run looks for the objects the deployer creates.
	pollObjects = 2 * time.Second
	// shutdownWait bounds the wait for the server's graceful shutdown once Run's context
	// ends: it waits for its clients, up to 5 s for a connection that has not sent its
	// first request, and k1s's stop must not. The listener is Run's own, closed on return.
	shutdownWait = 500 * time.Millisecond
)

// Config is what the controller needs; the files are layout's.
type Config struct {
	// NodeIP and Port are where this server serves the metrics API, and where the Service's
	// endpoint points while it holds the lease.
	NodeIP net.IP
	Port   int
	// Kubeconfig is metrics-server's own credential towards the apiserver (its informers,
	// delegated authentication and authorization): the client certificate KubeletClient.
	Kubeconfig string
	// Serving is its serving certificate, issued by the server CA for ServingName.
	Serving layout.Pair
	// KubeletClient is its client certificate (client CA) towards kubelets.
	KubeletClient layout.Pair
	// ServerCA signs Serving: the APIService carries it as its caBundle.
	ServerCA string
	// KubeletServingCA holds the CAs of the kubelets' serving certificates: metrics-server
	// verifies kubelets with it.
	KubeletServingCA string
	// ClientAuth are the apiserver's client-ca-file and requestheader-* flags: metrics-server
	// verifies its clients' certificates, and the aggregation proxy's, as the apiserver does.
	ClientAuth map[string]string
	// Client returns k1s's own client, which keeps the endpoints and the caBundle
	// (metrics-server's identity may not).
	Client func() (kubernetes.Interface, error)
	Log    logrus.FieldLogger
}

// Controller runs metrics-server and keeps the aggregator pointed at it.
type Controller struct{ cfg Config }

// New returns the controller of cfg.
func New(cfg Config) *Controller {
	if cfg.Log == nil {
		cfg.Log = logrus.StandardLogger()
	}
	return &Controller{cfg: cfg}
}

// Name implements controllers.Controller.
func (c *Controller) Name() string { return "metrics-server" }

// Run implements controllers.Controller: it serves the metrics API until ctx ends, and returns
// only once the server has stopped and released its port (the lease may move to another
// server, or this one may lead again).
func (c *Controller) Run(ctx context.Context) error {
	client, err := c.cfg.Client()
	if err != nil {
		return fmt.Errorf("API client: %w", err)
	}
	// The deployer applies the add-on's manifest as this controller starts, the APIService
	// last: once it exists, so do the RBAC metrics-server needs to start and the Service.
	if err := wait.PollUntilContextCancel(ctx, pollObjects, true, func(ctx context.Context) (bool, error) {
		return client.Discovery().RESTClient().Get().AbsPath(apiServicePath).Do(ctx).Error() == nil, nil
	}); err != nil {
		return nil // ctx ended
	}

	opts, err := c.options()
	if err != nil {
		return err
	}
	// The listener is k1s's, closed on every return: ServerConfig would open its own, which
	// stays open when a later step fails, and RunUntil closes it only if it got to serve.
	addr := net.JoinHostPort(c.cfg.NodeIP.String(), strconv.Itoa(c.cfg.Port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w (free the port, or --disable metrics-server)", addr, err)
	}
	defer ln.Close()
	opts.SecureServing.Listener = ln
	cfg, err := opts.ServerConfig()
	if err != nil {
		return fmt.Errorf("configuring metrics-server: %w", err)
	}
	// Options.Features (--profiling) is never applied upstream: pprof and the handler that
	// sets klog's verbosity would be served.
	cfg.Apiserver.EnableProfiling = false
	useModelNames(cfg.Apiserver)
	srv, err := cfg.Complete()
	if err != nil {
		return fmt.Errorf("configuring metrics-server: %w", err)
	}

	stopped := make(chan error, 1)
	go func() { stopped <- srv.RunUntil(ctx.Done()) }()
	c.cfg.Log.Infof("starting metrics-server on %s", addr)
	tick := time.NewTicker(resync)
	defer tick.Stop()
	for {
		if err := c.publish(ctx, client); err != nil && ctx.Err() == nil {
			c.cfg.Log.Warnf("pointing the metrics API at %s: %v (retrying in %s)", addr, err, resync)
		}
		select {
		case <-ctx.Done():
			select {
			case <-stopped:
			case <-time.After(shutdownWait):
				c.cfg.Log.Debugf("metrics-server is still closing its connections; leaving it to finish")
			}
			return nil
		case err := <-stopped:
			if err == nil {
				err = errors.New("stopped while still leading")
			}
			return fmt.Errorf("metrics-server: %w", err)
		case <-tick.C:
		}
	}
}

// publish points the Service's endpoints at this server and gives the APIService the CA to
// verify it with.
func (c *Controller) publish(ctx context.Context, client kubernetes.Interface) error {
	svc, err := client.CoreV1().Services(Namespace).Get(ctx, ServiceName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	apply := metav1.ApplyOptions{FieldManager: FieldManager, Force: true}
	if _, err := client.DiscoveryV1().EndpointSlices(Namespace).Apply(ctx, endpointSlice(svc, c.cfg.NodeIP, c.cfg.Port), apply); err != nil {
		return fmt.Errorf("EndpointSlice %s/%s: %w", Namespace, ServiceName, err)
	}
	ca, err := os.ReadFile(c.cfg.ServerCA)
	if err != nil {
		return err
	}
	// The clientset has no apiregistration client; the apply configuration makes the body.
	body, err := json.Marshal(apiregv1ac.APIService(APIServiceName).WithSpec(apiregv1ac.APIServiceSpec().WithCABundle(ca...)))
	if err != nil {
		return err
	}
	err = client.Discovery().RESTClient().Patch(types.ApplyPatchType).AbsPath(apiServicePath).
		Param("fieldManager", FieldManager).Param("force", "true").Body(body).Do(ctx).Error()
	if err != nil {
		return fmt.Errorf("APIService %s: %w", APIServiceName, err)
	}
	return nil
}

// endpointSlice is the Service's one EndpointSlice: this server's address, owned by the
// Service so that it goes when the add-on is disabled. The EndpointSlice controllers leave
// it alone: the Service has no selector, and managed-by is not theirs.
func endpointSlice(svc *corev1.Service, ip net.IP, port int) *discoveryv1ac.EndpointSliceApplyConfiguration {
	family := discoveryv1.AddressTypeIPv6
	if ip4 := ip.To4(); ip4 != nil {
		family, ip = discoveryv1.AddressTypeIPv4, ip4
	}
	return discoveryv1ac.EndpointSlice(svc.Name, svc.Namespace).
		WithLabels(map[string]string{discoveryv1.LabelServiceName: svc.Name, discoveryv1.LabelManagedBy: managedBy}).
		WithOwnerReferences(metav1ac.OwnerReference().WithAPIVersion("v1").WithKind("Service").WithName(svc.Name).WithUID(svc.UID)).
		WithAddressType(family).
		WithEndpoints(discoveryv1ac.Endpoint().WithAddresses(ip.String()).
			WithConditions(discoveryv1ac.EndpointConditions().WithReady(true))).
		WithPorts(discoveryv1ac.EndpointPort().WithName(PortName).WithPort(int32(port)).WithProtocol(corev1.ProtocolTCP))
}

// useModelNames gives c metrics-server's OpenAPI definitions under the names Kubernetes looks
// models up by since 1.35 (io.k8s.…, the types' OpenAPIModelName): v0.8.0's were generated
// before, with Go package paths, and its API group does not install with them.
func useModelNames(c *genericapiserver.Config) {
	namer := openapinamer.NewDefinitionNamer(api.Scheme)
	v2 := genericapiserver.DefaultOpenAPIConfig(openAPIDefinitions, namer)
	v3 := genericapiserver.DefaultOpenAPIV3Config(openAPIDefinitions, namer)
	v2.Info, v3.Info = c.OpenAPIConfig.Info, c.OpenAPIV3Config.Info
	c.OpenAPIConfig, c.OpenAPIV3Config = v2, v3
}

func openAPIDefinitions(ref common.ReferenceCallback) map[string]common.OpenAPIDefinition {
	defs := generatedopenapi.GetOpenAPIDefinitions(func(name string) spec.Ref { return ref(modelName(name)) })
	out := make(map[string]common.OpenAPIDefinition, len(defs))
	for name, def := range defs {
		for i, dep := range def.Dependencies {
			def.Dependencies[i] = modelName(dep)
		}
		out[modelName(name)] = def
	}
	return out
}

// modelName is the model name of a Go type's path (k8s.io/api/core/v1.Pod: io.k8s.api.core.v1.Pod).
func modelName(name string) string {
	if !strings.Contains(name, "/") {
		return name // a model name already
	}
	return openapiutil.ToRESTFriendlyName(name)
}

// Args are metrics-server's command-line arguments, as its upstream Deployment would pass
// them, with k1s's files and TLS policy.
func (c Config) Args() []string {
	defaults := map[string]string{
		"authentication-kubeconfig": c.Kubeconfig,
		"authorization-kubeconfig":  c.Kubeconfig,
		"kubeconfig":                c.Kubeconfig,
		"bind-address":              c.NodeIP.String(),
		"secure-port":               strconv.Itoa(c.Port),
		"tls-cert-file":             c.Serving.Cert,
		"tls-private-key-file":      c.Serving.Key,
		"tls-cipher-suites":         strings.Join(pki.TLSCipherSuites, ","),
		"tls-min-version":           pki.TLSMinVersion,
		// The kubelets' serving certificates come from their own CA (k1s approves their
		// CSRs after checking the node's addresses), so no --kubelet-insecure-tls.
		"kubelet-certificate-authority": c.KubeletServingCA,
		"kubelet-client-certificate":    c.KubeletClient.Cert,
		"kubelet-client-key":            c.KubeletClient.Key,
		// The addresses the kubelets' certificates are issued for, in the apiserver's order.
		"kubelet-preferred-address-types": "InternalIP,ExternalIP,Hostname",
		// The kubelet's port may be changed through --kubelet-arg; its Node says which.
		"kubelet-use-node-status-port": "true",
		"metric-resolution":            MetricResolution.String(),
		// HTTP/1.1 only: the one client is the apiserver's proxy, with a few requests a
		// minute. Over HTTP/2 a stop waits for that client to hang up after the server's
		// GOAWAY, up to HTTP/2's fixed second, and every stop of k1s paid it.
		"disable-http2-serving": "true",
	}
	// The CAs from the apiserver's files rather than its extension-apiserver-authentication
	// ConfigMap: metrics-server reads that through an informer, and until it has synced
	// refuses every request the aggregator proxies, the first of them at every start.
	maps.Copy(defaults, c.ClientAuth)
	argv, _ := args.Merge(defaults, nil)
	return argv
}

// options parses Args into metrics-server's options, as its cobra command does.
func (c *Controller) options() (*options.Options, error) {
	o := options.NewOptions()
	fs := pflag.NewFlagSet(c.Name(), pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	for name, set := range o.Flags().FlagSets {
		// Logging is klog's, routed by k1s: metrics-server must not configure it.
		if name != "logging" {
			fs.AddFlagSet(set)
		}
	}
	if err := fs.Parse(c.cfg.Args()); err != nil {
		return nil, fmt.Errorf("metrics-server arguments: %w", err)
	}
	if err := validate(o); err != nil {
		return nil, fmt.Errorf("metrics-server arguments: %w", err)
	}
	return o, nil
}

// validate is Options.Validate without its logsapi.ValidateAndApply, which would take klog
// back from k1s's logger (and fails when called a second time).
func validate(o *options.Options) error {
	errs := o.KubeletClient.Validate()
	errs = append(errs, o.GenericServerRunOptions.Validate()...)
	errs = append(errs, o.SecureServing.Validate()...)
	errs = append(errs, o.Authentication.Validate()...)
	errs = append(errs, o.Authorization.Validate()...)
	if o.MetricResolution < 10*time.Second || o.MetricResolution*9/10 < o.KubeletClient.KubeletRequestTimeout {
		errs = append(errs, fmt.Errorf("metric-resolution %s must be at least 10s and exceed kubelet-request-timeout %s", o.MetricResolution, o.KubeletClient.KubeletRequestTimeout))
	}
	return errors.Join(errs...)
}
