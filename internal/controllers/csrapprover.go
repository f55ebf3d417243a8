package controllers

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	certlisters "k8s.io/client-go/listers/certificates/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	"k8s.io/kubernetes/pkg/apis/certificates"

	"github.com/k1s-io/k1s/internal/join"
)

// csrDecision is what k1s does with a certificate signing request.
type csrDecision int

const (
	csrIgnore csrDecision = iota // not k1s's to decide (the upstream approver, or nobody)
	csrApprove
	csrDeny
	csrRetry // the Node it names is not known yet
)

// ServingPolicy is what a kubelet serving certificate may never name, whatever a node
// writes into its own status: the API server's names and addresses, Service and pod
// addresses, and cluster DNS names.
type ServingPolicy struct {
	ServiceCIDR, ClusterCIDR *net.IPNet
	ClusterDomain            string
	// ServerIPs and ServerNames are the apiserver's addresses and names (its certificate's);
	// ServerNode is the name of this server's own node, which shares its address ("" with
	// --disable-agent).
	ServerIPs   []net.IP
	ServerNames []string
	ServerNode  string
}

// How long a serving CSR naming an address its Node does not have yet stays pending (the
// node's status and its CSR race through the cache) before it is denied.
const servingAddressGrace = time.Minute

// csrApprover approves two kinds of CSR that the upstream approver cannot judge:
//   - a node client certificate asked with a bootstrap token: for a new name, the name is
//     bound to the CSR's key (see join.NodeIdentitySecretName); for a bound name, only with
//     that key;
//   - a kubelet serving certificate asked by system:node:<name>, only when every name and
//     address in it is one of that Node's own and none is another's or the API server's.
type csrApprover struct {
	client func() (kubernetes.Interface, error)
	policy ServingPolicy
	log    logrus.FieldLogger
}

// NewCSRApprover returns the controller that approves node client CSRs made with a bootstrap
// token and kubelet serving CSRs for a node's own addresses. client is called on each run.
func NewCSRApprover(client func() (kubernetes.Interface, error), policy ServingPolicy, log logrus.FieldLogger) Controller {
	return &csrApprover{client: client, policy: policy, log: log}
}

func (*csrApprover) Name() string { return "csr-approver" }

// csrRun is one run of the approver: its informers and queue live as long as the run.
type csrRun struct {
	client kubernetes.Interface
	nodes  corelisters.NodeLister
	csrs   certlisters.CertificateSigningRequestLister
	policy ServingPolicy
	queue  workqueue.TypedRateLimitingInterface[string]
	log    logrus.FieldLogger
}

func (a *csrApprover) Run(ctx context.Context) error {
	client, err := a.client()
	if err != nil {
		return fmt.Errorf("API client: %w", err)
	}
	factory := informers.NewSharedInformerFactory(client, 0)
	run := &csrRun{
		client: client,
		nodes:  factory.Core().V1().Nodes().Lister(),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, 30*time.Second),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "k1s-csr-approver"}),
		policy: a.policy,
		log:    a.log,
	}
	defer run.queue.ShutDown()
	csrs := factory.Certificates().V1().CertificateSigningRequests()
	run.csrs = csrs.Lister()
	enqueue := func(obj any) {
		if csr, ok := obj.(*certificatesv1.CertificateSigningRequest); ok {
			run.queue.Add(csr.Name)
		}
	}
	if _, err := csrs.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue, UpdateFunc: func(_, obj any) { enqueue(obj) },
	}); err != nil {
		return fmt.Errorf("watching CSRs: %w", err)
	}
	lister := csrs.Lister()
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), csrs.Informer().HasSynced, factory.Core().V1().Nodes().Informer().HasSynced) {
		return ctx.Err()
	}
	go func() { <-ctx.Done(); run.queue.ShutDown() }()
	for {
		name, quit := run.queue.Get()
		if quit {
			return nil
		}
		csr, err := lister.Get(name)
		if err == nil {
			err = run.handle(ctx, csr.DeepCopy())
		}
		switch {
		case err == nil || apierrors.IsNotFound(err):
			run.queue.Forget(name)
		default:
			run.queue.AddRateLimited(name)
		}
		run.queue.Done(name)
	}
}

func (a *csrRun) handle(ctx context.Context, csr *certificatesv1.CertificateSigningRequest) error {
	if decided(csr) {
		return nil
	}
	facts := csrFacts{
		node:  a.nodes.Get,
		nodes: func() ([]*corev1.Node, error) { return a.nodes.List(labels.Everything()) },
		identity: func(name string) (*corev1.Secret, error) {
			return a.client.CoreV1().Secrets(metav1.NamespaceSystem).Get(ctx, join.NodeIdentitySecretName(name), metav1.GetOptions{})
		},
		csrs:   func() ([]*certificatesv1.CertificateSigningRequest, error) { return a.csrs.List(labels.Everything()) },
		policy: a.policy,
		now:    time.Now(),
	}
	d := decideCSR(csr, facts)
	var cond certificatesv1.CertificateSigningRequestCondition
	switch d.decision {
	case csrIgnore:
		return nil
	case csrRetry:
		return errors.New(d.message)
	case csrApprove:
		if d.bind != nil {
			// Bound before approved: of two joins racing for one name, one binds it, and the
			// other is judged again against the binding.
			if _, err := a.client.CoreV1().Secrets(metav1.NamespaceSystem).Create(ctx, d.bind, metav1.CreateOptions{FieldManager: join.FieldManager}); err != nil {
				return fmt.Errorf("binding node name %s to its key: %w", d.bind.Annotations[join.NodeNameAnnotation], err)
			}
		}
		cond = certificatesv1.CertificateSigningRequestCondition{Type: certificatesv1.CertificateApproved, Reason: "K1sApproved", Message: d.message}
	case csrDeny:
		cond = certificatesv1.CertificateSigningRequestCondition{Type: certificatesv1.CertificateDenied, Reason: d.reason, Message: d.message}
	}
	cond.Status = corev1.ConditionTrue
	cond.LastUpdateTime = metav1.Now()
	csr.Status.Conditions = append(csr.Status.Conditions, cond)
	if _, err := a.client.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, csr.Name, csr, metav1.UpdateOptions{FieldManager: join.FieldManager}); err != nil {
		return fmt.Errorf("updating the approval of CSR %s: %w", csr.Name, err)
	}
	if d.decision == csrDeny {
		// A node that cannot join is a user's problem to fix; say so on the server too.
		a.log.Warnf("denied certificate signing request %s: %s", csr.Name, d.message)
	} else {
		a.log.Debugf("approved certificate signing request %s: %s", csr.Name, d.message)
	}
	return nil
}

// decided reports whether csr has been approved, denied, failed or issued.
func decided(csr *certificatesv1.CertificateSigningRequest) bool {
	if len(csr.Status.Certificate) > 0 {
		return true
	}
	for _, c := range csr.Status.Conditions {
		if c.Type == certificatesv1.CertificateApproved || c.Type == certificatesv1.CertificateDenied || c.Type == certificatesv1.CertificateFailed {
			return true
		}
	}
	return false
}

// inFlight reports whether csr may still give someone a certificate: pending, or approved
// and not yet issued.
func inFlight(csr *certificatesv1.CertificateSigningRequest) bool {
	if len(csr.Status.Certificate) > 0 {
		return false
	}
	for _, c := range csr.Status.Conditions {
		if c.Type == certificatesv1.CertificateDenied || c.Type == certificatesv1.CertificateFailed {
			return false
		}
	}
	return true
}

// csrFacts is what decideCSR reads of the cluster.
type csrFacts struct {
	node     func(name string) (*corev1.Node, error) // NotFound error if none
	nodes    func() ([]*corev1.Node, error)
	identity func(name string) (*corev1.Secret, error) // the name's binding; NotFound if none
	csrs     func() ([]*certificatesv1.CertificateSigningRequest, error)
	policy   ServingPolicy
	now      time.Time
}

// verdict is decideCSR's answer; bind is the binding to create before approving.
type verdict struct {
	decision csrDecision
	reason   string // of a denial
	message  string
	bind     *corev1.Secret
}

func deny(reason, format string, a ...any) verdict {
	return verdict{decision: csrDeny, reason: reason, message: fmt.Sprintf(format, a...)}
}

func retry(format string, a ...any) verdict {
	return verdict{decision: csrRetry, message: fmt.Sprintf(format, a...)}
}

// decideCSR judges a CSR.
func decideCSR(csr *certificatesv1.CertificateSigningRequest, facts csrFacts) verdict {
	spec := csr.Spec
	req, err := certificates.ParseCSR(spec.Request)
	if err != nil {
		return verdict{}
	}
	usages := sets.NewString()
	for _, u := range spec.Usages {
		usages.Insert(string(u))
	}
	switch spec.SignerName {
	case certificatesv1.KubeAPIServerClientKubeletSignerName:
		if !strings.HasPrefix(spec.Username, bootstrapapi.BootstrapUserPrefix) || !slices.Contains(spec.Groups, bootstrapapi.BootstrapDefaultGroup) {
			return verdict{} // renewals by nodes: the upstream approver's
		}
		if certificates.ValidateKubeletClientCSR(req, usages) != nil {
			return verdict{}
		}
		return decideJoin(csr, req, facts)
	case certificatesv1.KubeletServingSignerName:
		if !slices.Contains(spec.Groups, "system:nodes") || !strings.HasPrefix(spec.Username, "system:node:") {
			return verdict{}
		}
		if certificates.ValidateKubeletServingCSR(req, usages) != nil || req.Subject.CommonName != spec.Username {
			return verdict{}
		}
		return decideServing(csr, req, facts)
	}
	return verdict{}
}

// decideJoin judges a node client certificate asked with a bootstrap token.
func decideJoin(csr *certificatesv1.CertificateSigningRequest, req *x509.CertificateRequest, facts csrFacts) verdict {
	name := strings.TrimPrefix(req.Subject.CommonName, "system:node:")
	if name == "" || len(validation.IsDNS1123Subdomain(name)) > 0 {
		return deny(ReasonInvalidRequest, "node name %q is not a valid node name (a DNS subdomain): choose --node-name", name)
	}
	if len(validation.IsDNS1123Subdomain(join.NodeIdentitySecretName(name))) > 0 {
		return deny(ReasonInvalidRequest, "node name %q is too long for k1s to bind (at most %d characters): choose a shorter --node-name", name, join.MaxNodeNameLength)
	}
	if problem := weakKey(req.PublicKey); problem != "" {
		return deny(ReasonInvalidRequest, "node %s joins with %s: k1s accepts RSA of 2048 bits or more, ECDSA P-256/P-384/P-521 and Ed25519", name, problem)
	}
	key := join.KeyHash(req.RawSubjectPublicKeyInfo)
	binding, err := facts.identity(name)
	switch {
	case err == nil:
		if binding.Annotations[join.NodeKeyAnnotation] != key {
			return deny(join.ReasonNodeNameTaken, "%s", join.NodeNameTakenMessage(name))
		}
		return verdict{decision: csrApprove, message: "node client certificate for node " + name + ", with the key its name is bound to"}
	case !apierrors.IsNotFound(err):
		return retry("reading the binding of node name %s: %v", name, err)
	}
	if _, err := facts.node(name); err == nil {
		// A Node joined before names were bound: its name stays its own.
		return deny(join.ReasonNodeNameTaken, "%s", join.NodeNameTakenMessage(name))
	} else if !apierrors.IsNotFound(err) {
		return retry("%v", err)
	}
	others, err := facts.csrs()
	if err != nil {
		return retry("listing CSRs: %v", err)
	}
	for _, other := range others {
		if other.Name == csr.Name || other.Spec.SignerName != certificatesv1.KubeAPIServerClientKubeletSignerName || !inFlight(other) {
			continue
		}
		otherReq, err := certificates.ParseCSR(other.Spec.Request)
		if err != nil || otherReq.Subject.CommonName != req.Subject.CommonName || join.KeyHash(otherReq.RawSubjectPublicKeyInfo) == key {
			continue
		}
		// Of racing joins the first asked is judged first; the others are denied, now or (once
		// the first has bound the name) by the binding.
		if earlier(other, csr) {
			return deny(join.ReasonNodeNameTaken, "another node asked to join as %s first (CSR %s, with another key): make sure only one node uses that name, or choose --node-name", name, other.Name)
		}
	}
	return verdict{decision: csrApprove, message: "node client certificate for the new node " + name,
		bind: join.NodeIdentitySecret(name, key, csr.Spec.Username, facts.now)}
}

// earlier reports whether a was created before b (by name when at the same second).
func earlier(a, b *certificatesv1.CertificateSigningRequest) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Name < b.Name
}

// ReasonInvalidRequest is the Denied reason of a CSR k1s never approves as asked.
const ReasonInvalidRequest = "K1sInvalidRequest"

// weakKey says what is wrong with a CSR's public key, or "".
func weakKey(pub any) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return fmt.Sprintf("an RSA key of %d bits", k.N.BitLen())
		}
	case *ecdsa.PublicKey:
		if c := k.Curve; c != elliptic.P256() && c != elliptic.P384() && c != elliptic.P521() {
			return "an ECDSA key on an unknown curve"
		}
	case ed25519.PublicKey:
	default:
		return fmt.Sprintf("a key of an unknown kind (%T)", pub)
	}
	return ""
}

// decideServing judges a kubelet serving certificate asked by a node.
func decideServing(csr *certificatesv1.CertificateSigningRequest, req *x509.CertificateRequest, facts csrFacts) verdict {
	name := strings.TrimPrefix(csr.Spec.Username, "system:node:")
	if problem := weakKey(req.PublicKey); problem != "" {
		return deny(ReasonInvalidRequest, "serving certificate for node %s with %s", name, problem)
	}
	node, err := facts.node(name)
	if err != nil {
		return retry("node %s not known yet: %v", name, err)
	}
	all, err := facts.nodes()
	if err != nil {
		return retry("listing nodes: %v", err)
	}
	if bad := forbiddenSAN(req, name, all, facts.policy); bad != "" {
		return deny(ReasonInvalidRequest, "serving certificate for node %s names %s: a node's certificate may name only the node and its own addresses", name, bad)
	}
	if bad := foreignSANs(req, node); bad != "" {
		if facts.now.Sub(csr.CreationTimestamp.Time) < servingAddressGrace {
			return retry("serving certificate for node %s names %s, which is not one of the node's addresses (yet)", name, bad)
		}
		return deny(ReasonInvalidRequest, "serving certificate for node %s names %s, which is not one of the node's addresses", name, bad)
	}
	return verdict{decision: csrApprove, message: "kubelet serving certificate for the node's own addresses"}
}

// forbiddenSAN returns the first name or address of req that no node's serving certificate
// may have, whatever its Node says: another node's, the API server's, a Service's or a pod's,
// a cluster DNS name, or a loopback or unspecified address.
func forbiddenSAN(req *x509.CertificateRequest, name string, nodes []*corev1.Node, policy ServingPolicy) string {
	var otherNames []string
	var otherIPs []net.IP
	for _, n := range nodes {
		if n.Name == name {
			continue
		}
		otherNames = append(otherNames, strings.ToLower(n.Name))
		for _, a := range n.Status.Addresses {
			if ip := net.ParseIP(a.Address); ip != nil {
				otherIPs = append(otherIPs, ip)
			} else {
				otherNames = append(otherNames, strings.ToLower(a.Address))
			}
		}
	}
	serverNames := make([]string, 0, len(policy.ServerNames))
	for _, n := range policy.ServerNames {
		serverNames = append(serverNames, strings.ToLower(n))
	}
	domain := strings.Trim(policy.ClusterDomain, ".")
	for _, n := range req.DNSNames {
		lower := strings.ToLower(strings.TrimSuffix(n, "."))
		switch {
		case strings.Contains(lower, "*"), // a wildcard would cover other nodes' names
			lower == "localhost" || strings.HasSuffix(lower, ".localhost"),
			lower == "kubernetes" || strings.HasPrefix(lower, "kubernetes."),
			strings.HasSuffix(lower, ".svc") || strings.Contains(lower, ".svc."),
			domain != "" && (lower == domain || strings.HasSuffix(lower, "."+domain)),
			slices.Contains(serverNames, lower) && name != policy.ServerNode,
			slices.Contains(otherNames, lower):
			return n
		}
	}
	for _, ip := range req.IPAddresses {
		switch {
		case ip.IsLoopback() || ip.IsUnspecified() || ip.IsMulticast(),
			policy.ServiceCIDR != nil && policy.ServiceCIDR.Contains(ip),
			policy.ClusterCIDR != nil && policy.ClusterCIDR.Contains(ip),
			slices.ContainsFunc(policy.ServerIPs, ip.Equal) && name != policy.ServerNode,
			slices.ContainsFunc(otherIPs, ip.Equal):
			return ip.String()
		}
	}
	return ""
}

// foreignSANs returns the first name or address of req that is not one of node's, or "".
func foreignSANs(req *x509.CertificateRequest, node *corev1.Node) string {
	var names []string
	var ips []net.IP
	for _, a := range node.Status.Addresses {
		if ip := net.ParseIP(a.Address); ip != nil {
			ips = append(ips, ip)
		} else {
			names = append(names, a.Address)
		}
	}
	for _, n := range req.DNSNames {
		if !slices.Contains(names, n) {
			return n
		}
	}
	for _, ip := range req.IPAddresses {
		if !slices.ContainsFunc(ips, ip.Equal) {
			return ip.String()
		}
	}
	if len(req.EmailAddresses) > 0 || len(req.URIs) > 0 {
		return "an email address or URI"
	}
	return ""
}
