package logging

import (
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"

	"github.com/go-logr/logr"
	"github.com/sirupsen/logrus"
)

// klogSink is the logr sink klog writes to. Upstream info lines at -v 0 are debug lines for
// k1s: the apiserver alone prints hundreds at start, and a healthy start should fit on one
// screen. With verbosity above 0 they become info lines, up to that verbosity.
type klogSink struct {
	log       *logrus.Logger
	verbosity int
	stopping  *atomic.Bool
	name      string
	values    []any
}

var _ logr.LogSink = (*klogSink)(nil)

func (s *klogSink) Init(logr.RuntimeInfo) {}

func (s *klogSink) Enabled(level int) bool {
	if level > s.verbosity {
		return false
	}
	if s.verbosity == 0 {
		return s.log.IsLevelEnabled(logrus.DebugLevel)
	}
	return true
}

func (s *klogSink) Info(level int, msg string, keysAndValues ...any) {
	lvl := logrus.DebugLevel
	if s.verbosity > 0 {
		lvl = logrus.InfoLevel
	}
	s.entry(keysAndValues).Log(lvl, msg)
}

// Error lines from upstream are warnings to k1s: components report transient conditions (a
// peer not up yet, a conflict to retry) as errors during a normal start.
func (s *klogSink) Error(err error, msg string, keysAndValues ...any) {
	entry := s.entry(keysAndValues)
	errText := ""
	if err != nil {
		entry = entry.WithError(err)
		errText = err.Error()
	}
	component, _ := entry.Data["component"].(string)
	if s.stopping.Load() || isNoise(component, msg, errText) {
		entry.Debug(msg)
		return
	}
	entry.Warn(msg)
}

func (s *klogSink) WithValues(keysAndValues ...any) logr.LogSink {
	c := *s
	c.values = append(append([]any(nil), s.values...), keysAndValues...)
	return &c
}

func (s *klogSink) WithName(name string) logr.LogSink {
	c := *s
	if c.name == "" {
		c.name = name
	} else {
		c.name += "/" + name
	}
	return &c
}

func (s *klogSink) entry(keysAndValues []any) *logrus.Entry {
	fields := logrus.Fields{}
	addPairs(fields, s.values)
	addPairs(fields, keysAndValues)
	if _, ok := fields["component"]; !ok {
		fields["component"] = componentOfCaller()
	}
	if s.name != "" {
		fields["logger"] = s.name
	}
	return s.log.WithFields(fields)
}

func addPairs(fields logrus.Fields, kv []any) {
	for i := 0; i+1 < len(kv); i += 2 {
		key, ok := kv[i].(string)
		if !ok {
			key = fmt.Sprint(kv[i])
		}
		fields[key] = kv[i+1]
	}
	if len(kv)%2 == 1 {
		fields["EXTRA"] = kv[len(kv)-1]
	}
}

// componentPrefixes maps the package that logged a line to the component it belongs to.
// klog is one process-wide logger shared by all components, so the calling package is the
// only reliable attribution; libraries shared by all (client-go) are named as such.
var componentPrefixes = []struct{ prefix, component string }{
	{"k8s.io/kubernetes/pkg/kubelet", "kubelet"},
	{"k8s.io/kubernetes/cmd/kubelet", "kubelet"},
	{"k8s.io/kubernetes/pkg/volume", "kubelet"},
	{"k8s.io/kubernetes/pkg/proxy", "kube-proxy"},
	{"k8s.io/kubernetes/cmd/kube-proxy", "kube-proxy"},
	{"k8s.io/kubernetes/pkg/scheduler", "kube-scheduler"},
	{"k8s.io/kubernetes/cmd/kube-scheduler", "kube-scheduler"},
	{"k8s.io/kubernetes/pkg/controller", "kube-controller-manager"},
	{"k8s.io/kubernetes/cmd/kube-controller-manager", "kube-controller-manager"},
	{"k8s.io/controller-manager", "kube-controller-manager"},
	{"k8s.io/cloud-provider", "kube-controller-manager"},
	{"k8s.io/kubernetes/cmd/kube-apiserver", "kube-apiserver"},
	{"k8s.io/kubernetes/pkg/controlplane", "kube-apiserver"},
	{"k8s.io/kubernetes/pkg/registry", "kube-apiserver"},
	{"k8s.io/kubernetes/pkg/kubeapiserver", "kube-apiserver"},
	{"k8s.io/kubernetes/plugin", "kube-apiserver"},
	{"k8s.io/apiserver", "kube-apiserver"},
	{"k8s.io/kube-aggregator", "kube-apiserver"},
	{"k8s.io/apiextensions-apiserver", "kube-apiserver"},
	// The apiserver's etcd client; etcd's own server packages are the rest of go.etcd.io.
	{"go.etcd.io/etcd/client/v3", "kube-apiserver"},
	{"go.etcd.io", "etcd"},
	{"github.com/flannel-io", "flannel"},
	{"sigs.k8s.io/metrics-server", "metrics-server"},
	{"sigs.k8s.io/sig-storage-lib-external-provisioner", "local-storage"},
	{"sigs.k8s.io/kube-network-policies", "network-policy"},
	{"k8s.io/client-go", "client-go"},
	{"k8s.io/kubectl", "kubectl"},
	{"github.com/containerd", "containerd"},
	// k1s's own code, outermost on the stacks of the components it starts.
	{"github.com/k1s-io/k1s", "k1s"},
}

// Frames of the logging machinery itself, skipped when looking for the caller.
var loggingPackages = []string{
	"k8s.io/klog/",
	"github.com/go-logr/",
	"github.com/sirupsen/logrus",
	"k8s.io/component-base/logs",
	"runtime.",
}

// componentOfCaller walks the stack for the first frame of a known component (see
// ComponentOf), without collecting it: it runs for every upstream line logged.
func componentOfCaller() string {
	pcs := make([]uintptr, 64)
	n := runtime.Callers(3, pcs)
	frames := runtime.CallersFrames(pcs[:n])
	fallback := "k8s"
	for {
		frame, more := frames.Next()
		if c, owned := componentOfFunction(frame.Function, &fallback); owned {
			return c
		}
		if !more {
			return fallback
		}
	}
}

// ComponentOf names the component a stack (its function names, innermost first) belongs to:
// that of its innermost frame in a known component's packages. Shared libraries (client-go,
// component-helpers) run inside every component, so a frame further out usually says whose
// they are; a goroutine started by a library has no such frame and counts as "client-go", or
// "k8s" without even that. The benchmarks attribute heap profiles with it.
func ComponentOf(functions []string) string {
	fallback := "k8s"
	for _, fn := range functions {
		if c, owned := componentOfFunction(fn, &fallback); owned {
			return c
		}
	}
	return fallback
}

// componentOfFunction returns the component whose code fn is, if any; a shared library's
// frame only sets the fallback.
func componentOfFunction(fn string, fallback *string) (string, bool) {
	if isLoggingFrame(fn) {
		return "", false
	}
	for _, p := range componentPrefixes {
		if strings.HasPrefix(fn, p.prefix) {
			if p.component != "client-go" {
				return p.component, true
			}
			*fallback = p.component
		}
	}
	return "", false
}

func isLoggingFrame(fn string) bool {
	if strings.Contains(fn, "/k1s/internal/logging.") {
		return true
	}
	for _, p := range loggingPackages {
		if strings.HasPrefix(fn, p) {
			return true
		}
	}
	return false
}
