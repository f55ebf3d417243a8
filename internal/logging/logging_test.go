package logging

import (
	"bytes"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

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
	stopping.Store(true)
	z.Error("closed listener")
	if out.Len() != 0 {
		t.Errorf("an etcd error while stopping is shown: %s", out.String())
	}
}
