package controllers

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"

	"github.com/k1s-io/k1s/internal/join"
)

func TestClusterInfoPublisherPublishesThenIdles(t *testing.T) {
	caFile := filepath.Join(t.TempDir(), "server-ca.crt")
	if err := os.WriteFile(caFile, []byte("-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, cluster, _ := net.ParseCIDR("10.42.0.0/16")
	_, service, _ := net.ParseCIDR("10.43.0.0/16")
	client := fake.NewClientset()
	p := &ClusterInfoPublisher{
		Client:    func() (kubernetes.Interface, error) { return client, nil },
		CAFile:    caFile,
		ServerURL: "https://192.0.2.10:6443",
		Settings:  join.NodeConfig{ClusterCIDR: cluster, ServiceCIDR: service, ClusterDNS: net.ParseIP("10.43.0.10"), ClusterDomain: "cluster.local", DisabledAddons: []string{"coredns"}},
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	poll(t, "the publication", p.Initialized)
	if _, err := client.CoreV1().ConfigMaps(metav1.NamespacePublic).Get(ctx, bootstrapapi.ConfigMapClusterInfo, metav1.GetOptions{}); err != nil {
		t.Errorf("cluster-info: %v", err)
	}
	got, err := join.FetchNodeConfig(ctx, client)
	if err != nil || got.ClusterDomain != "cluster.local" || len(got.DisabledAddons) != 1 {
		t.Errorf("node config %+v: %v", got, err)
	}
	select {
	case err := <-done:
		t.Fatalf("the publisher returned while leading: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("stop: %v", err)
	}
}
