package agent

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/record"
	nodeutil "k8s.io/component-helpers/node/util"
	"k8s.io/klog/v2"
	kubeletoptions "k8s.io/kubernetes/cmd/kubelet/app/options"
	kubeletpkg "k8s.io/kubernetes/pkg/kubelet"
	kubeletpods "k8s.io/kubernetes/pkg/kubelet/config"
	kubetypes "k8s.io/kubernetes/pkg/kubelet/types"
	kubeletutil "k8s.io/kubernetes/pkg/kubelet/util"
)

// nodeKnownPoll is how often the kubelet's pod source looks for its node in the kubelet's
// cache: an in-memory lookup, for the moment between the kubelet's start and its node's
// registration.
const nodeKnownPoll = 50 * time.Millisecond

// usePodSources gives the kubelet the pod sources upstream's makePodSourceConfig would (the
// static pod path and URL, and the API server), with one change: the API server source starts
// watching as soon as the kubelet's node cache holds its node. Upstream checks that once a
// second (kubelet/config.WaitForAPIServerSyncPeriod), and its first check always comes before
// the cache's first list returns, so every kubelet start saw its pods a second late, and a new
// node's first pods (CoreDNS on a server's first start) up to a second after they were bound.
//
// The gate is upstream's own: the kubelet's node lister (Kubelet.GetNode), so pods are still
// admitted against the node as the cluster has it (labels, allocatable), never a guess.
func usePodSources(ctx context.Context, server *kubeletoptions.KubeletServer, deps *kubeletpkg.Dependencies) error {
	hostname, err := nodeutil.GetHostname(server.HostnameOverride)
	if err != nil {
		return fmt.Errorf("the kubelet's node name: %w", err)
	}
	nodeName := types.NodeName(hostname)
	if deps.PodStartupLatencyTracker == nil {
		deps.PodStartupLatencyTracker = kubeletutil.NewPodStartupLatencyTracker()
	}
	recorder := &laterRecorder{}
	pods := kubeletpods.NewPodConfig(recorder, deps.PodStartupLatencyTracker)
	// The sources are registered now (the kubelet waits until each has been heard from before
	// it cleans up pods) and start once the kubelet is made, inside kubeletapp.Run: it hands
	// itself over through a functional option, after its event recorder exists.
	kc := &server.KubeletConfiguration
	var sources []func(klog.Logger, *kubeletpkg.Kubelet)
	if kc.StaticPodPath != "" {
		ch := pods.Channel(ctx, kubetypes.FileSource)
		sources = append(sources, func(logger klog.Logger, _ *kubeletpkg.Kubelet) {
			kubeletpods.NewSourceFile(logger, kc.StaticPodPath, nodeName, kc.FileCheckFrequency.Duration, ch)
		})
	}
	if kc.StaticPodURL != "" {
		ch := pods.Channel(ctx, kubetypes.HTTPSource)
		sources = append(sources, func(logger klog.Logger, _ *kubeletpkg.Kubelet) {
			header := make(http.Header)
			for name, values := range kc.StaticPodURLHeader {
				for _, v := range values {
					header.Add(name, v)
				}
			}
			kubeletpods.NewSourceURL(logger, kc.StaticPodURL, header, nodeName, kc.HTTPCheckFrequency.Duration, ch)
		})
	}
	// As upstream: no API source for a kubelet without a kubeconfig (standalone), whose
	// client the kubelet leaves nil. The source uses the kubelet's own client, made by then.
	if server.KubeConfig != "" {
		fromAPI := pods.Channel(ctx, kubetypes.ApiserverSource)
		sources = append(sources, func(logger klog.Logger, k *kubeletpkg.Kubelet) {
			nodeKnown := func() bool {
				return wait.PollUntilContextCancel(ctx, nodeKnownPoll, true, func(ctx context.Context) (bool, error) {
					_, err := k.GetNode(ctx)
					return err == nil, nil
				}) == nil
			}
			kubeletpods.NewSourceApiserver(logger, deps.KubeClient, nodeName, nodeKnown, fromAPI)
		})
	}
	deps.Options = append(deps.Options, func(k *kubeletpkg.Kubelet) {
		recorder.EventRecorderLogger = deps.Recorder
		for _, start := range sources {
			start(klog.FromContext(ctx), k)
		}
	})
	deps.PodConfig = pods
	return nil
}

// laterRecorder is the kubelet's event recorder, which exists only once the kubelet is being
// made; it is set before any source starts.
type laterRecorder struct {
	record.EventRecorderLogger
}
