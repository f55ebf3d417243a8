package logging

import (
	"bytes"
	"context"
	"errors"
	stdlog "log"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"k8s.io/klog/v2"
)

// klog is process-global, so the cases run in one test, in order.
func TestKlogRouting(t *testing.T) {
	var out bytes.Buffer
	logs, err := Setup(Options{Output: &out})
	if err != nil {
		t.Fatal(err)
	}

	klog.InfoS("upstream chatter", "key", "value")
	klog.Flush()
	if strings.Contains(out.String(), "upstream chatter") {
		t.Errorf("an upstream info line is shown at the default level:\n%s", out.String())
	}

	klog.ErrorS(errors.New("boom"), "upstream failure", "pod", "p1")
	klog.Flush()
	line := out.String()
	for _, want := range []string{"level=warning", `msg="upstream failure"`, "error=boom", "pod=p1", "component="} {
		if !strings.Contains(line, want) {
			t.Errorf("error line lacks %q: %s", want, line)
		}
	}

	out.Reset()
	klog.FromContext(klog.NewContext(t.Context(), klog.Background().WithValues("component", "kubelet"))).Error(nil, "named")
	if !strings.Contains(out.String(), "component=kubelet") {
		t.Errorf("a contextual logger's component is lost: %s", out.String())
	}

	// A warning listed as noise is a debug line; the same message with another error is not.
	out.Reset()
	kubelet := klog.FromContext(klog.NewContext(t.Context(), klog.Background().WithValues("component", "kubelet")))
	kubelet.Error(errors.New(`node "n1" not found`), "Error getting the current node from lister")
	if out.Len() != 0 {
		t.Errorf("a start-up warning listed as noise is shown: %s", out.String())
	}
	kubelet.Error(errors.New("connection refused"), "Error getting the current node from lister")
	if !strings.Contains(out.String(), "connection refused") {
		t.Errorf("a listed message with an unlisted error is hidden: %q", out.String())
	}

	out.Reset()
	logs.Stopping()
	klog.ErrorS(errors.New("context canceled"), "call cut short by the stop")
	klog.Flush()
	if out.Len() != 0 {
		t.Errorf("an upstream error while stopping is shown at the default level: %s", out.String())
	}
}

func TestZapRouting(t *testing.T) {
	var out bytes.Buffer
	logs, err := Setup(Options{Output: &out})
	if err != nil {
		t.Fatal(err)
	}
	var stopping atomic.Bool
	z := NewZap(logs.Logger, "etcd", &stopping)
	z.Info("raft chatter")
	z.Warn("slow fdatasync")
	if s := out.String(); strings.Contains(s, "raft chatter") || !strings.Contains(s, "slow fdatasync") || !strings.Contains(s, "component=etcd") {
		t.Errorf("zap routing: %s", s)
	}
	out.Reset()
	z.Warn("Running http and grpc server on single port. This is not recommended for production.")
	if out.Len() != 0 {
		t.Errorf("an etcd warning listed as noise is shown: %s", out.String())
	}
	z.Named("other").Warn("simple token is not cryptographically signed")
	if out.Len() != 0 {
		t.Errorf("an etcd warning listed as noise is shown: %s", out.String())
	}

	out.Reset()
	stopping.Store(true)
	z.Error("closed listener")
	if out.Len() != 0 {
		t.Errorf("an etcd error while stopping is shown: %s", out.String())
	}
}

func TestNoiseEntriesSayWhy(t *testing.T) {
	for _, n := range noise {
		if (n.message == "" && n.messageHas == "" && n.errorHas == "") || n.why == "" {
			t.Errorf("noise entry %+v needs a message or an error, and a reason", n)
		}
	}
}

func TestComponentOf(t *testing.T) {
	for _, tc := range []struct {
		stack []string
		want  string
	}{
		{[]string{"k8s.io/client-go/tools/cache.(*Reflector).watch", "k8s.io/kubernetes/pkg/kubelet.(*Kubelet).Run", "github.com/k1s-io/k1s/internal/agent.run"}, "kubelet"},
		{[]string{"k8s.io/client-go/tools/cache.(*Reflector).watch", "github.com/k1s-io/k1s/internal/controllers.(*Runner).Run"}, "k1s"},
		{[]string{"k8s.io/client-go/tools/cache.(*Reflector).watch", "k8s.io/apimachinery/pkg/util/wait.(*Group).Start.func1"}, "client-go"},
		{[]string{"go.etcd.io/etcd/client/v3.(*watchGrpcStream).run"}, "kube-apiserver"},
		{[]string{"go.etcd.io/etcd/server/v3/etcdserver.(*EtcdServer).apply"}, "etcd"},
		{[]string{"k8s.io/klog/v2.(*loggingT).output", "k8s.io/apiserver/pkg/storage/cacher.(*Cacher).dispatchEvents"}, "kube-apiserver"},
		{[]string{"runtime.malg"}, "k8s"},
	} {
		if got := ComponentOf(tc.stack); got != tc.want {
			t.Errorf("ComponentOf(%v) = %q, want %q", tc.stack, got, tc.want)
		}
	}
}

// Go's log package, which HTTP servers without an error logger print to, goes through logrus
// too: a failed TLS handshake at debug, anything else at info.
func TestStdlogRouting(t *testing.T) {
	flags, writer := stdlog.Flags(), stdlog.Writer()
	t.Cleanup(func() { stdlog.SetFlags(flags); stdlog.SetOutput(writer) })
	var out bytes.Buffer
	logs, err := Setup(Options{Output: &out})
	if err != nil {
		t.Fatal(err)
	}
	stdlog.Printf("http: TLS handshake error from 192.0.2.1:4321: no serving certificate available for the kubelet")
	if out.Len() != 0 {
		t.Errorf("a failed TLS handshake is shown at the default level: %s", out.String())
	}
	logs.SetLevel(logrus.DebugLevel)
	stdlog.Printf("http: TLS handshake error from 192.0.2.1:4321: EOF")
	if s := out.String(); !strings.Contains(s, "level=debug") || !strings.Contains(s, "192.0.2.1:4321: EOF") {
		t.Errorf("a failed TLS handshake is not a debug line: %q", s)
	}
	logs.SetLevel(logrus.InfoLevel)
	out.Reset()
	stdlog.Printf("http: panic serving 192.0.2.1:4321: boom")
	if s := out.String(); !strings.Contains(s, "level=info") || !strings.Contains(s, `msg="http: panic serving 192.0.2.1:4321: boom"`) {
		t.Errorf("a log line is not shown at info: %q", s)
	}
}

// An upstream Fatal while k1s stops ends only its own goroutine: the stop goes on. (Without
// that, this test binary would exit with 255.)
func TestFatalWhileStoppingEndsOnlyItsGoroutine(t *testing.T) {
	var out bytes.Buffer
	logs, err := Setup(Options{Output: &out})
	if err != nil {
		t.Fatal(err)
	}
	logs.Stopping()
	done := make(chan struct{})
	go func() {
		defer close(done)
		klog.Fatalf("PostStartHook %q failed: %v", "start-service-ip-repair-controllers", context.Canceled)
		t.Error("klog.Fatalf returned")
	}()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("the goroutine that called klog.Fatalf did not end")
	}
}

func TestRaftsDeclinedCampaignIsNoise(t *testing.T) {
	if !isNoise("etcd", "b71f75320dc06a6c cannot campaign at term 1 since there are still pending configuration changes to apply", "") {
		t.Error("raft's declined campaign at a restart is shown as a warning")
	}
	if isNoise("kubelet", "b71f75320dc06a6c cannot campaign at term 1 since there are still pending configuration changes to apply", "") {
		t.Error("a noise entry of etcd hides another component's line")
	}
}
