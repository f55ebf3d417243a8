// Package helm is k1s's HelmChart controller: k3s's helm.cattle.io/v1 HelmChart and
// HelmChartConfig kinds, installed, upgraded and uninstalled in-process with the Helm SDK (no
// Job, no helper image), one chart at a time.
package helm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"helm.sh/helm/v4/pkg/action"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/kube"
	releasecommon "helm.sh/helm/v4/pkg/release/common"
	releasev1 "helm.sh/helm/v4/pkg/release/v1"
	"helm.sh/helm/v4/pkg/storage/driver"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/k1s-io/k1s/internal/deploy/helm/spec"
)

const (
	// finalizer holds a HelmChart until its release is uninstalled.
	finalizer = "k1s.io/helm-release"
	// fieldManager owns the status k1s writes.
	fieldManager = "k1s"

	defaultTimeout      = 300 * time.Second
	defaultBackOffLimit = 1000
	// maxHistory bounds the release Secrets each chart keeps.
	maxHistory = 10

	failurePolicyAbort = "abort"
)

// Controller keeps every HelmChart's release installed as its spec says.
type Controller struct {
	// Kubeconfig is the credential Helm acts with (the supervisor's: charts install any kind).
	Kubeconfig string
	Config     func() (*rest.Config, error)
	Client     func() (kubernetes.Interface, error)
	// StaticDir is the server's static directory (charts/NAME.tgz); CacheDir Helm's cache.
	StaticDir, CacheDir string
	Log                 logrus.FieldLogger
}

// Name is how logs call the controller.
func (c *Controller) Name() string { return "helm controller" }

type worker struct {
	c        *Controller
	dyn      dynamic.Interface
	client   kubernetes.Interface
	charts   cache.GenericLister
	configs  cache.GenericLister
	queue    workqueue.TypedRateLimitingInterface[string]
	recorder record.EventRecorder
	source   *chartSource
	// deployed is the digest each chart was last deployed with, by key: the informer's copy
	// may not have the status written after a deploy yet.
	deployed map[string]string
	// configFor is Helm's configuration for releases of a namespace (actionConfig).
	configFor func(namespace string) (*action.Configuration, error)
}

// Run works until ctx ends. Its informers watch two kinds that are empty on most clusters, so
// an unused controller costs two idle watches.
func (c *Controller) Run(ctx context.Context) error {
	cfg, err := c.Config()
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	client, err := c.Client()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.CacheDir, 0o700); err != nil {
		return fmt.Errorf("creating Helm's cache: %w", err)
	}
	if err := c.waitForKinds(ctx, dyn); err != nil {
		return err
	}
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	defer broadcaster.Shutdown()
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})

	factory := dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0)
	charts := factory.ForResource(spec.ChartResource)
	configs := factory.ForResource(spec.ConfigResource)
	queue := workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](5*time.Second, 5*time.Minute),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "helmcharts"})
	defer queue.ShutDown()
	enqueue := cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { add(queue, obj) },
		// Only a change of spec (or a deletion) is work: k1s's own status and finalizer
		// writes are not, and would otherwise retry a failing chart at once, past the backoff.
		UpdateFunc: func(old, obj any) {
			o, n := old.(*unstructured.Unstructured), obj.(*unstructured.Unstructured)
			if o.GetGeneration() != n.GetGeneration() || (n.GetDeletionTimestamp() != nil && o.GetDeletionTimestamp() == nil) {
				add(queue, obj)
			}
		},
		DeleteFunc: func(obj any) { add(queue, obj) },
	}
	if _, err := charts.Informer().AddEventHandler(enqueue); err != nil {
		return err
	}
	if _, err := configs.Informer().AddEventHandler(enqueue); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	for typ, synced := range factory.WaitForCacheSync(ctx.Done()) {
		if !synced {
			return fmt.Errorf("the %s informer did not sync", typ)
		}
	}
	w := &worker{
		c: c, dyn: dyn, client: client, queue: queue,
		charts: charts.Lister(), configs: configs.Lister(),
		recorder: broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "k1s-helm-controller"}),
		source:   &chartSource{staticDir: c.StaticDir, cacheDir: c.CacheDir, client: client},
		deployed: map[string]string{},
	}
	w.configFor = w.actionConfig
	go func() {
		<-ctx.Done()
		queue.ShutDown()
	}()
	for w.next(ctx) {
	}
	return nil
}

// waitForKinds waits until the API server serves HelmChart and HelmChartConfig (the add-on
// deployer installs them).
func (c *Controller) waitForKinds(ctx context.Context, dyn dynamic.Interface) error {
	logged := false
	return wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		_, err1 := dyn.Resource(spec.ChartResource).List(ctx, metav1.ListOptions{Limit: 1})
		_, err2 := dyn.Resource(spec.ConfigResource).List(ctx, metav1.ListOptions{Limit: 1})
		if err := errors.Join(err1, err2); err != nil {
			if !logged {
				c.Log.Debugf("helm controller: waiting for the HelmChart kinds to be served: %v", err)
				logged = true
			}
			return false, nil
		}
		return true, nil
	})
}

// add queues the HelmChart an object names (a HelmChartConfig names the chart of its name).
func add(queue workqueue.TypedRateLimitingInterface[string], obj any) {
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		queue.Add(key)
	}
}

// next handles one queued chart; it returns false when the queue shuts down.
func (w *worker) next(ctx context.Context) bool {
	key, quit := w.queue.Get()
	if quit {
		return false
	}
	defer w.queue.Done(key)
	retry, err := w.sync(ctx, key)
	switch {
	case err != nil && retry:
		w.queue.AddRateLimited(key)
	default:
		w.queue.Forget(key)
	}
	return true
}

// sync brings one HelmChart's release to its spec. retry says whether a failure is worth
// another try without a change.
func (w *worker) sync(ctx context.Context, key string) (retry bool, _ error) {
	obj, err := w.charts.Get(key)
	if apierrors.IsNotFound(err) {
		delete(w.deployed, key)
		return false, nil // deleted; its finalizer made sure the release went first
	}
	if err != nil {
		return true, err
	}
	hc := &spec.HelmChart{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.(*unstructured.Unstructured).Object, hc); err != nil {
		w.fail(ctx, hc, fmt.Errorf("reading the HelmChart: %w", err), false)
		return false, err
	}
	log := w.c.Log.WithField("helmchart", key)
	if hc.DeletionTimestamp != nil {
		if !slices.Contains(hc.Finalizers, finalizer) {
			delete(w.deployed, key)
			return false, nil
		}
		if err := w.uninstall(ctx, hc); err != nil {
			log.Warnf("Uninstalling the release: %v (retrying)", err)
			w.recorder.Eventf(obj, corev1.EventTypeWarning, "UninstallFailed", "uninstalling release %s: %v", hc.Name, err)
			return true, err
		}
		delete(w.deployed, key)
		log.Infof("Uninstalled release %s of deleted HelmChart", hc.Name)
		return true, w.setFinalizer(ctx, hc, false)
	}
	if !slices.Contains(hc.Finalizers, finalizer) {
		if err := w.setFinalizer(ctx, hc, true); err != nil {
			return true, err
		}
	}

	var config *spec.HelmChartConfig
	if cobj, err := w.configs.Get(key); err == nil {
		config = &spec.HelmChartConfig{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(cobj.(*unstructured.Unstructured).Object, config); err != nil {
			return false, w.fail(ctx, hc, fmt.Errorf("reading HelmChartConfig %s: %w", key, err), false)
		}
	}
	files, err := spec.Layers(hc, config, func(s spec.SecretSpec) ([]spec.ValuesFile, error) { return w.secretValues(ctx, hc.Namespace, s) })
	if err != nil {
		return true, w.fail(ctx, hc, err, true)
	}
	dig := spec.Digest(hc, config, files)
	st := hc.Status
	if w.deployed[key] == dig || (st.Digest == dig && st.Error == "" && st.ObservedGeneration == hc.Generation) {
		return false, nil // installed as it is; a change of spec or config changes the digest
	}
	delete(w.deployed, key)
	limit := int32(defaultBackOffLimit)
	if hc.Spec.BackOffLimit != nil {
		limit = *hc.Spec.BackOffLimit
	}
	if st.Digest == dig && st.Error != "" && st.Failures > limit {
		return false, nil // gave up on this spec: a change of it tries again
	}
	values, err := spec.MergeValues(files, hc.Spec.Set)
	if err != nil {
		return false, w.fail(ctx, hc, err, true, dig)
	}
	ch, err := w.source.load(ctx, hc)
	if err != nil {
		return true, w.fail(ctx, hc, err, true, dig)
	}
	rel, err := w.deploy(ctx, hc, config, ch, values)
	if err != nil {
		return true, w.fail(ctx, hc, err, true, dig)
	}
	w.deployed[key] = dig
	log.Infof("Release %s/%s is at revision %d (chart %s %s)", rel.Namespace, rel.Name, rel.Version, ch.Metadata.Name, ch.Metadata.Version)
	w.recorder.Eventf(obj, corev1.EventTypeNormal, "Deployed", "release %s/%s revision %d: chart %s %s", rel.Namespace, rel.Name, rel.Version, ch.Metadata.Name, ch.Metadata.Version)
	return false, w.writeStatus(ctx, hc, spec.ChartStatus{
		ObservedGeneration: hc.Generation,
		Release:            rel.Name,
		ReleaseNamespace:   rel.Namespace,
		Revision:           rel.Version,
		ReleaseStatus:      string(rel.Info.Status),
		ChartVersion:       ch.Metadata.Version,
		Digest:             dig,
		Conditions:         conditions(hc, metav1.ConditionTrue, "Deployed", fmt.Sprintf("revision %d", rel.Version)),
	})
}

// deploy installs or upgrades the release, after recovering one that a crash or a failure
// left behind.
func (w *worker) deploy(ctx context.Context, hc *spec.HelmChart, config *spec.HelmChartConfig, ch *chartv2.Chart, values map[string]any) (*releasev1.Release, error) {
	namespace := targetNamespace(hc)
	cfg, err := w.configFor(namespace)
	if err != nil {
		return nil, err
	}
	timeout := defaultTimeout
	if hc.Spec.Timeout != nil && hc.Spec.Timeout.Duration > 0 {
		timeout = hc.Spec.Timeout.Duration
	}
	// Helm bounds each step with timeout; a context that ends mid-install would return while
	// Helm's own goroutine goes on writing the release, so Helm's run is not cancelled.
	ctx = context.WithoutCancel(ctx)

	last, err := lastRelease(cfg, hc.Name)
	if err != nil {
		return nil, err
	}
	policy := hc.Spec.FailurePolicy
	if config != nil && config.Spec.FailurePolicy != "" {
		policy = config.Spec.FailurePolicy
	}
	if last != nil {
		status := last.Info.Status
		switch {
		case status == releasecommon.StatusFailed && policy == failurePolicyAbort:
			return nil, fmt.Errorf("release %s/%s is %s and failurePolicy is abort: repair it by hand (helm rollback or helm uninstall), or set failurePolicy: reinstall", namespace, hc.Name, status)
		case status.IsPending() && last.Version == 1, status == releasecommon.StatusFailed && last.Version == 1,
			status == releasecommon.StatusFailed && policy != failurePolicyAbort:
			// A first install that never finished, or a failed release to reinstall.
			w.c.Log.Infof("Release %s/%s is %s: uninstalling it to install again", namespace, hc.Name, status)
			if err := w.uninstall(ctx, hc); err != nil {
				return nil, err
			}
			last = nil
		case status.IsPending():
			// An upgrade a crash interrupted: back to the last good revision, then upgrade.
			w.c.Log.Infof("Release %s/%s was left %s: rolling it back", namespace, hc.Name, status)
			last.SetStatus(releasecommon.StatusFailed, "interrupted: k1s stopped during the "+string(status))
			if err := cfg.Releases.Update(last); err != nil {
				return nil, fmt.Errorf("marking the interrupted release failed: %w", err)
			}
			rb := action.NewRollback(cfg)
			rb.Timeout = timeout
			rb.WaitStrategy = kube.HookOnlyStrategy
			rb.MaxHistory = maxHistory
			if err := rb.Run(hc.Name); err != nil {
				return nil, fmt.Errorf("rolling back the release left %s: %w", status, err)
			}
		case status == releasecommon.StatusUninstalling:
			// An uninstall that did not finish (a reinstall's, or a deleted chart's).
			if err := w.uninstall(ctx, hc); err != nil {
				return nil, err
			}
			last = nil
		case status == releasecommon.StatusUninstalled:
			last = nil // history kept by `helm uninstall --keep-history`: Replace reuses the name
		}
	}
	var out any
	if last == nil {
		install := action.NewInstall(cfg)
		install.ReleaseName = hc.Name
		install.Namespace = namespace
		install.CreateNamespace = hc.Spec.CreateNamespace
		install.Replace = true
		install.Timeout = timeout
		install.WaitStrategy = kube.HookOnlyStrategy
		out, err = install.RunWithContext(ctx, ch, values)
	} else {
		upgrade := action.NewUpgrade(cfg)
		upgrade.Namespace = namespace
		upgrade.Timeout = timeout
		upgrade.WaitStrategy = kube.HookOnlyStrategy
		upgrade.MaxHistory = maxHistory
		out, err = upgrade.RunWithContext(ctx, hc.Name, ch, values)
	}
	if err != nil {
		return nil, err
	}
	rel, ok := out.(*releasev1.Release)
	if !ok {
		return nil, fmt.Errorf("helm returned a release of type %T", out)
	}
	return rel, nil
}

// uninstall removes the chart's release, if it has one.
func (w *worker) uninstall(ctx context.Context, hc *spec.HelmChart) error {
	cfg, err := w.configFor(targetNamespace(hc))
	if err != nil {
		return err
	}
	un := action.NewUninstall(cfg)
	// Not IgnoreNotFound: it also swallows errors reading the release history, and the
	// finalizer would then go with the release still installed.
	un.WaitStrategy = kube.HookOnlyStrategy
	un.Timeout = defaultTimeout
	if hc.Spec.Timeout != nil && hc.Spec.Timeout.Duration > 0 {
		un.Timeout = hc.Spec.Timeout.Duration
	}
	_, err = un.Run(hc.Name)
	if errors.Is(err, driver.ErrReleaseNotFound) {
		return nil
	}
	return err
}

// actionConfig is Helm's configuration for releases in namespace, stored as Secrets there
// (as the helm CLI and k3s store them).
func (w *worker) actionConfig(namespace string) (*action.Configuration, error) {
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig = &w.c.Kubeconfig
	flags.Namespace = &namespace
	cacheDir := w.c.CacheDir + "/discovery"
	flags.CacheDir = &cacheDir
	cfg := action.NewConfiguration(action.ConfigurationSetLogger(helmLog{w.c.Log}))
	if err := cfg.Init(flags, namespace, "secret"); err != nil {
		return nil, fmt.Errorf("helm: %w", err)
	}
	return cfg, nil
}

// lastRelease is the newest revision of the release, nil if there is none.
func lastRelease(cfg *action.Configuration, name string) (*releasev1.Release, error) {
	h := action.NewHistory(cfg)
	h.Max = 1
	list, err := h.Run(name)
	if errors.Is(err, driver.ErrReleaseNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading release %s: %w", name, err)
	}
	var newest *releasev1.Release
	for _, r := range list {
		if r, ok := r.(*releasev1.Release); ok && (newest == nil || r.Version > newest.Version) {
			newest = r
		}
	}
	return newest, nil
}

func targetNamespace(hc *spec.HelmChart) string {
	if hc.Spec.TargetNamespace != "" {
		return hc.Spec.TargetNamespace
	}
	return hc.Namespace
}

// secretValues reads the values files a valuesSecrets entry names.
func (w *worker) secretValues(ctx context.Context, namespace string, s spec.SecretSpec) ([]spec.ValuesFile, error) {
	secret, err := w.client.CoreV1().Secrets(namespace).Get(ctx, s.Name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("Secret %s/%s: %w", namespace, s.Name, err)
	}
	keys := s.Keys
	if len(keys) == 0 {
		for k := range secret.Data {
			keys = append(keys, k)
		}
		slices.Sort(keys)
	}
	var out []spec.ValuesFile
	for _, k := range keys {
		v, ok := secret.Data[k]
		if !ok {
			return nil, fmt.Errorf("Secret %s/%s has no key %s", namespace, s.Name, k)
		}
		out = append(out, spec.ValuesFile{Name: fmt.Sprintf("Secret %s/%s key %s", namespace, s.Name, k), Content: string(v)})
	}
	return out, nil
}

// fail reports err in the HelmChart's status and an Event, and counts it against the
// backOffLimit when counted. The digest, if given, is that of the spec that failed.
func (w *worker) fail(ctx context.Context, hc *spec.HelmChart, err error, counted bool, dig ...string) error {
	if hc.Name == "" {
		return err
	}
	st := hc.Status
	st.ObservedGeneration = hc.Generation
	st.Error = strings.Join(strings.Fields(err.Error()), " ") // Helm's template errors span lines
	if len(dig) > 0 {
		if st.Digest != dig[0] {
			st.Failures = 0
		}
		st.Digest = dig[0]
	}
	if counted {
		st.Failures++
	}
	if hc.Status.Error != st.Error {
		w.c.Log.WithField("helmchart", hc.Namespace+"/"+hc.Name).Warnf("%s (retrying with backoff)", st.Error)
	}
	st.Conditions = conditions(hc, metav1.ConditionFalse, "Failed", st.Error)
	w.recorder.Eventf(chartRef(hc), corev1.EventTypeWarning, "Failed", "%s", st.Error)
	if werr := w.writeStatus(ctx, hc, st); werr != nil {
		return errors.Join(err, werr)
	}
	return err
}

func conditions(hc *spec.HelmChart, status metav1.ConditionStatus, reason, message string) []metav1.Condition {
	conds := append([]metav1.Condition(nil), hc.Status.Conditions...)
	meta.SetStatusCondition(&conds, metav1.Condition{
		Type: "Ready", Status: status, Reason: reason, Message: message, ObservedGeneration: hc.Generation,
	})
	return conds
}

// writeStatus applies the status subresource.
func (w *worker) writeStatus(ctx context.Context, hc *spec.HelmChart, st spec.ChartStatus) error {
	obj := &spec.HelmChart{
		TypeMeta:   metav1.TypeMeta{APIVersion: spec.ChartResource.GroupVersion().String(), Kind: "HelmChart"},
		ObjectMeta: metav1.ObjectMeta{Name: hc.Name, Namespace: hc.Namespace},
		Status:     st,
	}
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return err
	}
	u := &unstructured.Unstructured{Object: content}
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u.Object, "spec")
	_, err = w.dyn.Resource(spec.ChartResource).Namespace(hc.Namespace).ApplyStatus(ctx, hc.Name, u, metav1.ApplyOptions{FieldManager: fieldManager, Force: true})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// setFinalizer adds or removes the finalizer with a JSON merge patch guarded by the
// resourceVersion, so a concurrent change is not overwritten.
func (w *worker) setFinalizer(ctx context.Context, hc *spec.HelmChart, present bool) error {
	finalizers := slices.DeleteFunc(slices.Clone(hc.Finalizers), func(f string) bool { return f == finalizer })
	if present {
		finalizers = append(finalizers, finalizer)
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"finalizers": finalizers, "resourceVersion": hc.ResourceVersion}})
	if err != nil {
		return err
	}
	_, err = w.dyn.Resource(spec.ChartResource).Namespace(hc.Namespace).Patch(ctx, hc.Name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: fieldManager})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// chartRef is a HelmChart as an Event's object.
func chartRef(hc *spec.HelmChart) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(spec.ChartResource.GroupVersion().String())
	u.SetKind("HelmChart")
	u.SetNamespace(hc.Namespace)
	u.SetName(hc.Name)
	u.SetUID(hc.UID)
	return u
}

// helmLog sends Helm's slog records to k1s's log at debug level: Helm narrates every step.
type helmLog struct{ log logrus.FieldLogger }

func (h helmLog) Enabled(context.Context, slog.Level) bool { return true }
func (h helmLog) Handle(_ context.Context, r slog.Record) error {
	h.log.Debugf("helm: %s", r.Message)
	return nil
}
func (h helmLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h helmLog) WithGroup(string) slog.Handler      { return h }
