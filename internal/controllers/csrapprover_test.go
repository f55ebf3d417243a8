package controllers

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/k1s-io/k1s/internal/join"
)

// csrPEM returns a PEM certificate request of tmpl, signed by a fresh key.
func csrPEM(t *testing.T, tmpl x509.CertificateRequest) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func nodeSubject(name string) pkix.Name {
	return pkix.Name{CommonName: "system:node:" + name, Organization: []string{"system:nodes"}}
}

var (
	clientUsages  = []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth}
	servingUsages = []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth}
	bootstrapper  = "system:bootstrap:abcdef"
	bootstrappers = []string{"system:bootstrappers", "system:authenticated"}
	nodeGroups    = []string{"system:nodes", "system:authenticated"}
)

// testNow is when the table's CSRs are judged; they were made then too.
var testNow = time.Unix(1_800_000_000, 0)

func csr(request []byte, signer, user string, groups []string, usages []certificatesv1.KeyUsage) *certificatesv1.CertificateSigningRequest {
	return &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: "csr-1", CreationTimestamp: metav1.NewTime(testNow)},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request: request, SignerName: signer, Username: user, Groups: groups, Usages: usages,
		},
	}
}

// keyHashOf is the hash of a PEM CSR's key, as bindings record it.
func keyHashOf(t *testing.T, request []byte) string {
	t.Helper()
	block, _ := pem.Decode(request)
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return join.KeyHash(req.RawSubjectPublicKeyInfo)
}

// facts is a fake cluster: the nodes "existing" (with addrs) and "other" (10.0.0.6), bindings
// of names to key hashes, and other CSRs.
func facts(addrs []corev1.NodeAddress, bindings map[string]string, others ...*certificatesv1.CertificateSigningRequest) csrFacts {
	other := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "other"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: "10.0.0.6"}, {Type: corev1.NodeHostName, Address: "other"}}}}
	_, serviceCIDR, _ := net.ParseCIDR("10.43.0.0/16")
	_, clusterCIDR, _ := net.ParseCIDR("10.42.0.0/16")
	return csrFacts{
		node: nodes(addrs...),
		nodes: func() ([]*corev1.Node, error) {
			existing, _ := nodes(addrs...)("existing")
			return []*corev1.Node{existing, other}, nil
		},
		identity: func(name string) (*corev1.Secret, error) {
			if hash, ok := bindings[name]; ok {
				return join.NodeIdentitySecret(name, hash, bootstrapper, testNow), nil
			}
			return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, name)
		},
		csrs: func() ([]*certificatesv1.CertificateSigningRequest, error) { return others, nil },
		policy: ServingPolicy{ServiceCIDR: serviceCIDR, ClusterCIDR: clusterCIDR, ClusterDomain: "cluster.local",
			ServerIPs: []net.IP{net.ParseIP("10.0.0.1")}, ServerNames: []string{"server.example"}, ServerNode: "server"},
		now: testNow,
	}
}

// nodes is a fake node cache: the named node "existing" has the given addresses; "broken"
// fails with a non-NotFound error.
func nodes(addresses ...corev1.NodeAddress) func(string) (*corev1.Node, error) {
	return func(name string) (*corev1.Node, error) {
		switch name {
		case "existing":
			return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{Addresses: addresses}}, nil
		case "broken":
			return nil, errors.New("cache unavailable")
		}
		return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "nodes"}, name)
	}
}

func TestDecideCSR(t *testing.T) {
	clientReq := func(name string) []byte { return csrPEM(t, x509.CertificateRequest{Subject: nodeSubject(name)}) }
	servingReq := func(name string, dns []string, ips ...string) []byte {
		tmpl := x509.CertificateRequest{Subject: nodeSubject(name), DNSNames: dns}
		for _, ip := range ips {
			tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
		}
		return csrPEM(t, tmpl)
	}
	addrs := []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: "10.0.0.5"},
		{Type: corev1.NodeInternalIP, Address: "fd00::5"},
		{Type: corev1.NodeHostName, Address: "existing"},
	}
	const (
		clientSigner  = certificatesv1.KubeAPIServerClientKubeletSignerName
		servingSigner = certificatesv1.KubeletServingSignerName
	)
	boundReq := clientReq("bound")
	// Another join for "raced" asked a second before the CSRs of the table; one for "late" a
	// second after.
	racing := csr(clientReq("raced"), clientSigner, bootstrapper, bootstrappers, clientUsages)
	racing.Name = "racing"
	racing.CreationTimestamp = metav1.NewTime(testNow.Add(-time.Second))
	late := csr(clientReq("late"), clientSigner, bootstrapper, bootstrappers, clientUsages)
	late.Name = "late"
	late.CreationTimestamp = metav1.NewTime(testNow.Add(time.Second))
	rsaReq := func(bits int) []byte {
		key, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: nodeSubject("rsa")}, key)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	}
	cluster := facts(addrs, map[string]string{"bound": keyHashOf(t, boundReq)}, racing, late)

	tests := []struct {
		name    string
		csr     *certificatesv1.CertificateSigningRequest
		want    csrDecision
		message string // a substring of the decision's message
	}{
		{"unparseable request", csr([]byte("not a CSR"), clientSigner, bootstrapper, bootstrappers, clientUsages), csrIgnore, ""},

		// Client certificates asked with a bootstrap token.
		{"client for a new node", csr(clientReq("new"), clientSigner, bootstrapper, bootstrappers, clientUsages), csrApprove, "new node new"},
		{"client with key encipherment (RSA)", csr(clientReq("new"), clientSigner, bootstrapper, bootstrappers,
			append([]certificatesv1.KeyUsage{certificatesv1.UsageKeyEncipherment}, clientUsages...)), csrApprove, "new node new"},
		{"client for a taken name", csr(clientReq("existing"), clientSigner, bootstrapper, bootstrappers, clientUsages), csrDeny, join.NodeNameTakenMessage("existing")},
		{"client for a bound name with another key", csr(clientReq("bound"), clientSigner, bootstrapper, bootstrappers, clientUsages), csrDeny, join.NodeNameTakenMessage("bound")},
		{"client for a bound name with its key", csr(boundReq, clientSigner, bootstrapper, bootstrappers, clientUsages), csrApprove, "with the key its name is bound to"},
		{"client racing an earlier join", csr(clientReq("raced"), clientSigner, bootstrapper, bootstrappers, clientUsages), csrDeny, "asked to join as raced first (CSR racing"},
		{"client racing a later join", csr(clientReq("late"), clientSigner, bootstrapper, bootstrappers, clientUsages), csrApprove, "new node late"},
		{"client for a name too long to bind", csr(clientReq(strings.Repeat("n", join.MaxNodeNameLength+1)), clientSigner, bootstrapper, bootstrappers, clientUsages), csrDeny, "too long"},
		{"client with an RSA key of 1024 bits", csr(rsaReq(1024), clientSigner, bootstrapper, bootstrappers, clientUsages), csrDeny, "RSA key of 1024 bits"},
		{"client with an RSA key of 2048 bits", csr(rsaReq(2048), clientSigner, bootstrapper, bootstrappers, clientUsages), csrApprove, "new node rsa"},
		{"client with an empty node name", csr(clientReq(""), clientSigner, bootstrapper, bootstrappers, clientUsages), csrDeny, "not a valid node name"},
		{"client while the node cache fails", csr(clientReq("broken"), clientSigner, bootstrapper, bootstrappers, clientUsages), csrRetry, "cache unavailable"},
		{"client renewal by a node", csr(clientReq("existing"), clientSigner, "system:node:existing", nodeGroups, clientUsages), csrIgnore, ""},
		{"client by a bootstrap user outside system:bootstrappers", csr(clientReq("new"), clientSigner, bootstrapper, []string{"system:authenticated"}, clientUsages), csrIgnore, ""},
		{"client by another user in system:bootstrappers", csr(clientReq("new"), clientSigner, "alice", bootstrappers, clientUsages), csrIgnore, ""},
		{"client with serving usages", csr(clientReq("new"), clientSigner, bootstrapper, bootstrappers, servingUsages), csrIgnore, ""},
		{"client with a DNS name", csr(servingReq("new", []string{"new"}), clientSigner, bootstrapper, bootstrappers, clientUsages), csrIgnore, ""},
		{"client for a non-node name", csr(csrPEM(t, x509.CertificateRequest{Subject: pkix.Name{CommonName: "admin", Organization: []string{"system:nodes"}}}),
			clientSigner, bootstrapper, bootstrappers, clientUsages), csrIgnore, ""},
		{"client outside system:nodes", csr(csrPEM(t, x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:node:new", Organization: []string{"system:masters"}}}),
			clientSigner, bootstrapper, bootstrappers, clientUsages), csrIgnore, ""},

		// Kubelet serving certificates asked by the node itself.
		{"serving for the node's own addresses", csr(servingReq("existing", []string{"existing"}, "10.0.0.5", "fd00::5"), servingSigner, "system:node:existing", nodeGroups, servingUsages), csrApprove, "own addresses"},
		{"serving for one of the node's addresses", csr(servingReq("existing", nil, "10.0.0.5"), servingSigner, "system:node:existing", nodeGroups, servingUsages), csrApprove, "own addresses"},
		{"serving with an extra DNS name, fresh", csr(servingReq("existing", []string{"existing", "evil.example"}, "10.0.0.5"), servingSigner, "system:node:existing", nodeGroups, servingUsages), csrRetry, "names evil.example"},
		{"serving with an extra IP, fresh", csr(servingReq("existing", []string{"existing"}, "10.0.0.5", "10.0.0.99"), servingSigner, "system:node:existing", nodeGroups, servingUsages), csrRetry, "names 10.0.0.99"},
		{"serving with an extra IP, a minute old", aged(csr(servingReq("existing", []string{"existing"}, "10.0.0.5", "10.0.0.99"), servingSigner, "system:node:existing", nodeGroups, servingUsages)), csrDeny, "names 10.0.0.99"},
		{"serving for the kubernetes Service's IP", csr(servingReq("existing", []string{"existing"}, "10.43.0.1"), servingSigner, "system:node:existing", nodeGroups, servingUsages), csrDeny, "names 10.43.0.1"},
		{"serving for a pod IP", csr(servingReq("existing", nil, "10.42.0.9"), servingSigner, "system:node:existing", nodeGroups, servingUsages), csrDeny, "names 10.42.0.9"},
		{"serving for kubernetes.default.svc", csr(servingReq("existing", []string{"kubernetes.default.svc"}, "10.0.0.5"), servingSigner, "system:node:existing", nodeGroups, servingUsages), csrDeny, "names kubernetes.default.svc"},
		{"serving for a Service's name", csr(servingReq("existing", []string{"web.default.svc.cluster.local"}), servingSigner, "system:node:existing", nodeGroups, servingUsages), csrDeny, "names web.default.svc.cluster.local"},
		{"serving for localhost", csr(servingReq("existing", []string{"localhost"}, "127.0.0.1"), servingSigner, "system:node:existing", nodeGroups, servingUsages), csrDeny, "names localhost"},
		{"serving for another node's address", csr(servingReq("existing", nil, "10.0.0.6"), servingSigner, "system:node:existing", nodeGroups, servingUsages), csrDeny, "names 10.0.0.6"},
		{"serving for another node's name", csr(servingReq("existing", []string{"other"}), servingSigner, "system:node:existing", nodeGroups, servingUsages), csrDeny, "names other"},
		{"serving for the server's address", csr(servingReq("existing", nil, "10.0.0.1"), servingSigner, "system:node:existing", nodeGroups, servingUsages), csrDeny, "names 10.0.0.1"},
		{"serving for a wildcard name", csr(servingReq("existing", []string{"*.nodes.example"}), servingSigner, "system:node:existing", nodeGroups, servingUsages), csrDeny, "names *.nodes.example"},
		{"serving for another node's name in capitals", csr(servingReq("existing", []string{"OTHER"}), servingSigner, "system:node:existing", nodeGroups, servingUsages), csrDeny, "names OTHER"},
		{"serving for the server's name in capitals", csr(servingReq("existing", []string{"Server.Example"}), servingSigner, "system:node:existing", nodeGroups, servingUsages), csrDeny, "names Server.Example"},
		{"serving for the server's name", csr(servingReq("existing", []string{"server.example"}), servingSigner, "system:node:existing", nodeGroups, servingUsages), csrDeny, "names server.example"},
		{"serving for a node not known yet", csr(servingReq("new", []string{"new"}), servingSigner, "system:node:new", nodeGroups, servingUsages), csrRetry, "node new not known yet"},
		{"serving for another node's name", csr(servingReq("other", []string{"existing"}, "10.0.0.5"), servingSigner, "system:node:existing", nodeGroups, servingUsages), csrIgnore, ""},
		{"serving by a user outside system:nodes", csr(servingReq("existing", []string{"existing"}), servingSigner, "system:node:existing", []string{"system:authenticated"}, servingUsages), csrIgnore, ""},
		{"serving by a non-node user", csr(servingReq("existing", []string{"existing"}), servingSigner, "alice", nodeGroups, servingUsages), csrIgnore, ""},
		{"serving with client usages", csr(servingReq("existing", []string{"existing"}), servingSigner, "system:node:existing", nodeGroups, clientUsages), csrIgnore, ""},
		{"serving without names", csr(clientReq("existing"), servingSigner, "system:node:existing", nodeGroups, servingUsages), csrIgnore, ""},
		{"serving with a URI", csr(csrPEM(t, x509.CertificateRequest{Subject: nodeSubject("existing"), DNSNames: []string{"existing"}, URIs: []*url.URL{{Scheme: "spiffe", Host: "x"}}}),
			servingSigner, "system:node:existing", nodeGroups, servingUsages), csrIgnore, ""},

		// Other signers are not k1s's.
		{"kube-apiserver-client signer", csr(clientReq("new"), certificatesv1.KubeAPIServerClientSignerName, bootstrapper, bootstrappers, clientUsages), csrIgnore, ""},
		{"custom signer", csr(clientReq("new"), "example.com/signer", bootstrapper, bootstrappers, clientUsages), csrIgnore, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := decideCSR(tt.csr, cluster)
			got, message := v.decision, v.message
			if got != tt.want {
				t.Fatalf("decision %d (%q), want %d", got, message, tt.want)
			}
			if !strings.Contains(message, tt.message) {
				t.Errorf("message %q, want it to contain %q", message, tt.message)
			}
			if tt.want == csrIgnore && message != "" {
				t.Errorf("ignored with message %q", message)
			}
			// A new name is bound to the key that joins with it; a known one is not bound again.
			newName := got == csrApprove && tt.csr.Spec.SignerName == clientSigner && !strings.Contains(message, "bound to")
			if newName != (v.bind != nil) {
				t.Errorf("binding %v for a decision %d (%q)", v.bind, got, message)
			}
			if v.bind != nil && v.bind.Annotations[join.NodeKeyAnnotation] != keyHashOf(t, tt.csr.Spec.Request) {
				t.Error("the binding does not record the CSR's key")
			}
		})
	}
}

// foreignSANs also refuses email addresses and URIs, which decideCSR's upstream validation
// already rejects; check it directly.
func aged(c *certificatesv1.CertificateSigningRequest) *certificatesv1.CertificateSigningRequest {
	c.CreationTimestamp = metav1.NewTime(testNow.Add(-servingAddressGrace - time.Second))
	return c
}

func TestForeignSANsEmailOrURI(t *testing.T) {
	node := &corev1.Node{Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: "n"}}}}
	if got := foreignSANs(&x509.CertificateRequest{DNSNames: []string{"n"}, EmailAddresses: []string{"a@b"}}, node); got == "" {
		t.Error("an email address was accepted")
	}
	if got := foreignSANs(&x509.CertificateRequest{DNSNames: []string{"n"}}, node); got != "" {
		t.Errorf("the node's own name was refused: %s", got)
	}
}

// TestCSRApproverRun checks the controller end to end on a fake API: it approves, denies
// with the join package's reason, and leaves decided CSRs alone.
func TestCSRApproverRun(t *testing.T) {
	existing := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "existing"}}
	newNode := csr(csrPEM(t, x509.CertificateRequest{Subject: nodeSubject("new")}),
		certificatesv1.KubeAPIServerClientKubeletSignerName, bootstrapper, bootstrappers, clientUsages)
	newNode.Name = "new"
	taken := csr(csrPEM(t, x509.CertificateRequest{Subject: nodeSubject("existing")}),
		certificatesv1.KubeAPIServerClientKubeletSignerName, bootstrapper, bootstrappers, clientUsages)
	taken.Name = "taken"
	decided := newNode.DeepCopy()
	decided.Name = "decided"
	decided.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateDenied, Status: corev1.ConditionTrue, Reason: "ByHand"}}
	client := fake.NewClientset(existing, newNode, taken, decided)

	log := testLog(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	approver := NewCSRApprover(func() (kubernetes.Interface, error) { return client, nil }, ServingPolicy{}, log)
	go func() { done <- approver.Run(ctx) }()

	condition := func(name string) (certificatesv1.CertificateSigningRequestCondition, bool) {
		got, err := client.CertificatesV1().CertificateSigningRequests().Get(t.Context(), name, metav1.GetOptions{})
		if err != nil || len(got.Status.Conditions) == 0 {
			return certificatesv1.CertificateSigningRequestCondition{}, false
		}
		return got.Status.Conditions[len(got.Status.Conditions)-1], true
	}
	poll(t, "the new node's CSR approved and the taken name's denied", func() bool {
		a, okA := condition("new")
		d, okD := condition("taken")
		return okA && okD && a.Type == certificatesv1.CertificateApproved && d.Type == certificatesv1.CertificateDenied
	})
	if _, err := client.CoreV1().Secrets(metav1.NamespaceSystem).Get(t.Context(), join.NodeIdentitySecretName("new"), metav1.GetOptions{}); err != nil {
		t.Errorf("the new node's name is not bound: %v", err)
	}
	if d, _ := condition("taken"); d.Reason != join.ReasonNodeNameTaken {
		t.Errorf("denied with reason %q, want %q", d.Reason, join.ReasonNodeNameTaken)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run returned %v after its context ended", err)
	}
	got, err := client.CertificatesV1().CertificateSigningRequests().Get(t.Context(), "decided", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Status.Conditions) != 1 {
		t.Errorf("an already decided CSR was changed: %+v", got.Status.Conditions)
	}
}
