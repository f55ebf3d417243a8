package netpol

import (
	"errors"

	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// errNoPod is what an IP index lookup without a result returns (see noNRI).
var errNoPod = errors.New("no pod has this address")

// noNRI wraps the pod informer given to kube-network-policies v0.8.0 so that its engine can
// run without NRI. The engine looks a packet's addresses up in its pod IP index and, when no
// pod has the address (a host, an outside address), asks its NRI plugin, which is nil when
// NRI is disabled: a nil-pointer panic (pkg/networkpolicy/controller.go:189-190) that would
// take k1s down. An empty lookup answered with an error instead makes the engine return "no
// pod" (controller.go:185-187), which is what the NRI plugin would have said. NRI itself is
// no option: k1s's containerd has no NRI, so the plugin could only reach another runtime's
// socket (/var/run/nri/nri.sock) and register itself there.
type noNRI struct {
	coreinformers.PodInformer
}

func (p noNRI) Informer() cache.SharedIndexInformer {
	return noNRIInformer{p.PodInformer.Informer()}
}

type noNRIInformer struct {
	cache.SharedIndexInformer
}

func (i noNRIInformer) GetIndexer() cache.Indexer {
	return noNRIIndexer{i.SharedIndexInformer.GetIndexer()}
}

type noNRIIndexer struct {
	cache.Indexer
}

func (x noNRIIndexer) ByIndex(indexName, indexedValue string) ([]any, error) {
	objs, err := x.Indexer.ByIndex(indexName, indexedValue)
	if err == nil && len(objs) == 0 {
		return nil, errNoPod
	}
	return objs, err
}
