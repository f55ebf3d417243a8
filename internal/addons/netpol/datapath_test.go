package netpol

import (
	"errors"
	"net"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"
)

func TestChoose(t *testing.T) {
	if d, err := Choose(nil, firewallNFTables); d != DatapathNFTables || err != nil {
		t.Errorf("nft queue works: %v, %v", d, err)
	}
	if d, err := Choose(nil, firewallIPTables); d != DatapathNFTables || err != nil {
		t.Errorf("nft queue works, iptables host: %v, %v", d, err)
	}
	noQueue := errors.New("conn.Receive: netlink receive: no such file or directory")
	if d, err := Choose(noQueue, firewallIPTables); d != DatapathIPTables || err != nil {
		t.Errorf("no nft queue, iptables host: %v, %v", d, err)
	}
	_, err := Choose(noQueue, firewallNFTables)
	if err == nil || !strings.Contains(err.Error(), "install iptables, or start the servers with --disable-network-policy") {
		t.Errorf("no datapath: %v", err)
	}
}

func TestChainRules(t *testing.T) {
	_, cidr, _ := net.ParseCIDR("10.42.1.0/24")
	want := [][]string{
		{"-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "RETURN"},
		{"-m", "owner", "--uid-owner", "0", "-j", "RETURN"},
		{"-s", "10.42.1.0/24", "-j", "NFQUEUE", "--queue-num", "100", "--queue-bypass"},
		{"-d", "10.42.1.0/24", "-j", "NFQUEUE", "--queue-num", "100", "--queue-bypass"},
	}
	if got := ChainRules(cidr, 100); !reflect.DeepEqual(got, want) {
		t.Errorf("ChainRules = %q, want %q", got, want)
	}
	if got := JumpRule("K1S-NETPOL"); got[len(got)-1] != "K1S-NETPOL" || got[len(got)-2] != "-j" {
		t.Errorf("JumpRule = %q", got)
	}
}

func TestNeedsBug1766Fix(t *testing.T) {
	for release, want := range map[string]bool{
		"6.18.44-fc-v1272": false, "6.12.0": false, "7.0.1": false,
		"6.11.9-amd64": true, "5.15.0-91-generic": true, "4.19.0": true, "": true, "weird": true,
	} {
		if got := NeedsBug1766Fix(release); got != want {
			t.Errorf("NeedsBug1766Fix(%q) = %v, want %v", release, got, want)
		}
	}
}

func TestAnyPolicy(t *testing.T) {
	none := func(labels.Selector) ([]int, error) { return nil, nil }
	one := func(labels.Selector) ([]int, error) { return []int{1}, nil }
	if got, _ := anyPolicy(none); got {
		t.Error("no policy")
	}
	if got, _ := anyPolicy(one); !got {
		t.Error("one policy")
	}
}

// An empty IP lookup is an error, so the engine never asks its (absent) NRI plugin.
func TestNoNRIIndexer(t *testing.T) {
	const index = "ip"
	inner := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{index: func(obj any) ([]string, error) {
		return []string{obj.(*corev1.Pod).Status.PodIP}, nil
	}})
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "a"}, Status: corev1.PodStatus{PodIP: "10.42.0.5"}}
	if err := inner.Add(pod); err != nil {
		t.Fatal(err)
	}
	x := noNRIIndexer{inner}
	if objs, err := x.ByIndex(index, "10.42.0.5"); err != nil || len(objs) != 1 {
		t.Errorf("known address: %v, %v", objs, err)
	}
	if _, err := x.ByIndex(index, "192.0.2.1"); !errors.Is(err, errNoPod) {
		t.Errorf("unknown address: %v", err)
	}
	if _, err := x.ByIndex("missing", "x"); err == nil || errors.Is(err, errNoPod) {
		t.Errorf("unknown index keeps its error: %v", err)
	}
}
