package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"time"

	"github.com/spf13/pflag"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	cliflag "k8s.io/component-base/cli/flag"
	"k8s.io/klog/v2"
	apiserverapp "k8s.io/kubernetes/cmd/kube-apiserver/app"
	apiserveroptions "k8s.io/kubernetes/cmd/kube-apiserver/app/options"
	cmapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	cmoptions "k8s.io/kubernetes/cmd/kube-controller-manager/app/options"
	schedulerapp "k8s.io/kubernetes/cmd/kube-scheduler/app"
	scheduleroptions "k8s.io/kubernetes/cmd/kube-scheduler/app/options"
	rbacrest "k8s.io/kubernetes/pkg/registry/rbac/rest"
	schedulingrest "k8s.io/kubernetes/pkg/registry/scheduling/rest"

	"github.com/k1s-io/k1s/internal/bootstrappolicy"
	"github.com/k1s-io/k1s/internal/component"
	"github.com/k1s-io/k1s/internal/kubeclient"
)

// parseUpstreamFlags parses a component's command line into its options, as its own cobra
// command would, without running the command (which installs a process-wide signal handler).
func parseUpstreamFlags(userFlag string, nfs cliflag.NamedFlagSets, argv []string) error {
	fs := pflag.NewFlagSet(userFlag, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	for _, name := range nfs.Order {
		fs.AddFlagSet(nfs.FlagSets[name])
	}
	if err := fs.Parse(argv); err != nil {
		return fmt.Errorf("--%s: %w", userFlag, err)
	}
	return nil
}

// withComponentLogger names the component on every line it logs through its context's logger
// (upstream code increasingly does); the rest is attributed by the calling package.
func withComponentLogger(ctx context.Context, name string) context.Context {
	return klog.NewContext(ctx, klog.Background().WithValues("component", name))
}

// newAPIServer parses the apiserver's arguments now, so that a bad --kube-apiserver-arg stops
// k1s before anything starts, and returns the component that completes and runs them.
// quorumLost, when it is set, says why etcd cannot answer ("" while it can).
func newAPIServer(argv []string, admin *kubeclient.Lazy, quorumLost func() string) (component.Component, error) {
	opts := apiserveroptions.NewServerRunOptions()
	if err := parseUpstreamFlags("kube-apiserver-arg", opts.Flags(), argv); err != nil {
		return nil, err
	}
	run := func(ctx context.Context) error {
		ctx = withComponentLogger(ctx, "kube-apiserver")
		if err := opts.GenericServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
			return err
		}
		// The apiserver's loopback clients would log the warnings the apiserver itself issues.
		rest.SetDefaultWarningHandler(rest.NoWarnings{})
		completed, err := opts.Complete(ctx)
		if err != nil {
			return err
		}
		if errs := completed.Validate(); len(errs) != 0 {
			return utilerrors.NewAggregate(errs)
		}
		// apiserverapp.Run's steps, with k1s's quorum filter around the whole chain.
		if completed.InformerName == nil {
			name, err := cache.NewInformerName("kube-apiserver")
			if err != nil {
				return err
			}
			completed.InformerName = name
		}
		config, err := apiserverapp.NewConfig(completed)
		if err != nil {
			return err
		}
		kubeAPIs := config.KubeAPIs.ControlPlane.Generic
		kubeAPIs.DisabledPostStartHooks.Insert(rbacrest.PostStartHookName, schedulingrest.PostStartHookName)
		served := config.KubeAPIs.ControlPlane.APIResourceConfigSource.ResourceEnabled
		if err := kubeAPIs.AddPostStartHook(bootstrapPolicyHook, ensureBootstrapPolicy(served)); err != nil {
			return err
		}
		if quorumLost != nil {
			generic := &config.Aggregator.GenericConfig.Config
			chain := generic.BuildHandlerChainFunc
			generic.BuildHandlerChainFunc = func(h http.Handler, c *genericapiserver.Config) http.Handler {
				return failWithoutQuorum(chain(h, c), quorumLost)
			}
		}
		completedConfig, err := config.Complete()
		if err != nil {
			return err
		}
		srv, err := apiserverapp.CreateServerChain(completedConfig)
		if err != nil {
			return err
		}
		prepared, err := srv.PrepareRun()
		if err != nil {
			return err
		}
		return prepared.Run(ctx)
	}
	ready := func(ctx context.Context) error {
		client, err := admin.Client()
		if err != nil {
			return err
		}
		// The apiserver's socket listens before it serves: a check sent then waits for it to
		// begin serving, and a client giving up while it answers makes it log a warning. Its
		// own slowest check (etcd's) gives up after 2 s.
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		body, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").Param("verbose", "").DoRaw(ctx)
		if err != nil {
			return fmt.Errorf("/readyz: %s", component.FailedChecks(body, err))
		}
		return nil
	}
	return component.NewFunc("kube-apiserver", run, ready), nil
}

// bootstrapPolicyHook does the work of the apiserver's hooks rbac/bootstrap-roles and
// scheduling/bootstrap-system-priority-classes, which k1s disables (see
// internal/bootstrappolicy); /healthz, /livez and /readyz wait for it as they did for them.
const bootstrapPolicyHook = "k1s/bootstrap-policy"

// ensureBootstrapPolicy retries until it succeeds, for as long as the apiserver runs: upstream's
// hooks give up after 30 s and take the process down with them, while k1s keeps saying what the
// apiserver waits for. It returns nil when the apiserver stops: a hook's error is fatal.
func ensureBootstrapPolicy(served bootstrappolicy.Served) genericapiserver.PostStartHookFunc {
	return func(hook genericapiserver.PostStartHookContext) error {
		logger, start := klog.FromContext(hook), time.Now()
		var lastReport time.Time
		backoff := wait.Backoff{Duration: 250 * time.Millisecond, Factor: 2, Cap: 10 * time.Second, Steps: math.MaxInt32}
		for {
			result, err := writeBootstrapPolicy(hook, hook.LoopbackClientConfig, served)
			if err == nil {
				for _, name := range result.Protected {
					// As upstream's hook says it.
					klog.Warningf("skipped reconcile-protected %s with missing permissions or subjects", name)
				}
				logger.V(2).Info("Wrote the bootstrap policy", "created", result.Created, "updated", result.Updated)
				return nil
			}
			// Quiet while the apiserver may still be starting; then an error every 10 s.
			if time.Since(start) > 5*time.Second && time.Since(lastReport) >= 10*time.Second {
				logger.Error(err, "Writing the bootstrap policy (RBAC roles and bindings, system priority classes) failed, retrying")
				lastReport = time.Now()
			} else {
				logger.V(2).Info("Writing the bootstrap policy failed, retrying", "err", err)
			}
			select {
			case <-hook.Done():
				return nil
			case <-time.After(backoff.Step()):
			}
		}
	}
}

func writeBootstrapPolicy(ctx context.Context, loopback *rest.Config, served bootstrappolicy.Served) (bootstrappolicy.Result, error) {
	client, err := kubernetes.NewForConfig(loopback)
	if err != nil {
		return bootstrappolicy.Result{}, err
	}
	return bootstrappolicy.Ensure(ctx, client, bootstrappolicy.Workers, served)
}

func newControllerManager(argv []string, healthURL string) (component.Component, error) {
	opts, err := cmoptions.NewKubeControllerManagerOptions()
	if err != nil {
		return nil, fmt.Errorf("kube-controller-manager options: %w", err)
	}
	nfs := opts.Flags(cmapp.KnownControllers(), cmapp.ControllersDisabledByDefault(), cmapp.ControllerAliases())
	opts.ParsedFlags = &nfs
	if err := parseUpstreamFlags("kube-controller-manager-arg", nfs, argv); err != nil {
		return nil, err
	}
	run := func(ctx context.Context) error {
		ctx = withComponentLogger(ctx, "kube-controller-manager")
		if err := opts.ComponentGlobalsRegistry.Set(); err != nil {
			return err
		}
		c, err := opts.Config(ctx, cmapp.KnownControllers(), cmapp.ControllersDisabledByDefault(), cmapp.ControllerAliases())
		if err != nil {
			return err
		}
		return cmapp.Run(ctx, c.Complete())
	}
	return component.NewFunc("kube-controller-manager", run, component.HTTPReady(healthURL, true)), nil
}

func newScheduler(argv []string, healthURL string) (component.Component, error) {
	opts := scheduleroptions.NewOptions()
	if err := parseUpstreamFlags("kube-scheduler-arg", *opts.Flags, argv); err != nil {
		return nil, err
	}
	run := func(ctx context.Context) error {
		ctx = withComponentLogger(ctx, "kube-scheduler")
		if err := opts.ComponentGlobalsRegistry.Set(); err != nil {
			return err
		}
		cc, sched, err := schedulerapp.Setup(ctx, opts)
		if err != nil {
			return err
		}
		return schedulerapp.Run(ctx, cc, sched)
	}
	return component.NewFunc("kube-scheduler", run, component.HTTPReady(healthURL, true)), nil
}

// failWithoutQuorum answers every request but the health checks at once, with 503 and why,
// while etcd has lost its quorum: upstream would hold each one until it times out.
func failWithoutQuorum(next http.Handler, quorumLost func() string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		why := quorumLost()
		if why == "" || slices.Contains([]string{"/livez", "/readyz", "/healthz", "/version"}, r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		status := metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure,
			Message: why, Reason: metav1.StatusReasonServiceUnavailable, Code: http.StatusServiceUnavailable}
		// No Retry-After: client-go would wait and retry ten times before saying anything.
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = json.NewEncoder(w).Encode(status)
	})
}
