package controllers

import (
	"context"
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
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
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

// csrApprover approves two kinds of CSR that the upstream approver cannot judge:
//   - a node client certificate asked with a bootstrap token, only for a name no Node has
//     (a token holder must not take over an existing node's identity);
//   - a kubelet serving certificate asked by system:node:<name>, only when every name and
//     address in it is one of that Node's own.
type csrApprover struct {
	client func() (kubernetes.Interface, error)
	log    logrus.FieldLogger
}

// NewCSRApprover returns the controller that approves node client CSRs made with a bootstrap
// token and kubelet serving CSRs for a node's own addresses. client is called on each run.
func NewCSRApprover(client func() (kubernetes.Interface, error), log logrus.FieldLogger) Controller {
	return &csrApprover{client: client, log: log}
}

func (*csrApprover) Name() string { return "csr-approver" }

// csrRun is one run of the approver: its informers and queue live as long as the run.
type csrRun struct {
	client kubernetes.Interface
	nodes  corelisters.NodeLister
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
		log: a.log,
	}
	defer run.queue.ShutDown()
	csrs := factory.Certificates().V1().CertificateSigningRequests()
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
	if len(csr.Status.Certificate) > 0 {
		return nil
	}
	for _, c := range csr.Status.Conditions {
		if c.Type == certificatesv1.CertificateApproved || c.Type == certificatesv1.CertificateDenied || c.Type == certificatesv1.CertificateFailed {
			return nil
		}
	}
	decision, message := decideCSR(csr, func(name string) (*corev1.Node, error) { return a.nodes.Get(name) })
	var cond certificatesv1.CertificateSigningRequestCondition
	switch decision {
	case csrIgnore:
		return nil
	case csrRetry:
		return errors.New(message)
	case csrApprove:
		cond = certificatesv1.CertificateSigningRequestCondition{Type: certificatesv1.CertificateApproved, Reason: "K1sApproved", Message: message}
	case csrDeny:
		cond = certificatesv1.CertificateSigningRequestCondition{Type: certificatesv1.CertificateDenied, Reason: join.ReasonNodeNameTaken, Message: message}
	}
	cond.Status = corev1.ConditionTrue
	cond.LastUpdateTime = metav1.Now()
	csr.Status.Conditions = append(csr.Status.Conditions, cond)
	if _, err := a.client.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, csr.Name, csr, metav1.UpdateOptions{FieldManager: join.FieldManager}); err != nil {
		return fmt.Errorf("updating the approval of CSR %s: %w", csr.Name, err)
	}
	if decision == csrDeny {
		// A node that cannot join is a user's problem to fix; say so on the server too.
		a.log.Warnf("denied certificate signing request %s: %s", csr.Name, message)
	} else {
		a.log.Debugf("approved certificate signing request %s: %s", csr.Name, message)
	}
	return nil
}

// decideCSR judges a CSR; getNode returns a Node from the cache (a NotFound error if none).
func decideCSR(csr *certificatesv1.CertificateSigningRequest, getNode func(string) (*corev1.Node, error)) (csrDecision, string) {
	spec := csr.Spec
	req, err := certificates.ParseCSR(spec.Request)
	if err != nil {
		return csrIgnore, ""
	}
	usages := sets.NewString()
	for _, u := range spec.Usages {
		usages.Insert(string(u))
	}
	switch spec.SignerName {
	case certificatesv1.KubeAPIServerClientKubeletSignerName:
		if !strings.HasPrefix(spec.Username, bootstrapapi.BootstrapUserPrefix) || !slices.Contains(spec.Groups, bootstrapapi.BootstrapDefaultGroup) {
			return csrIgnore, "" // renewals by nodes: the upstream approver's
		}
		if certificates.ValidateKubeletClientCSR(req, usages) != nil {
			return csrIgnore, ""
		}
		name := strings.TrimPrefix(req.Subject.CommonName, "system:node:")
		if _, err := getNode(name); err == nil {
			return csrDeny, join.NodeNameTakenMessage(name)
		} else if !apierrors.IsNotFound(err) {
			return csrRetry, err.Error()
		}
		return csrApprove, "node client certificate for the new node " + name
	case certificatesv1.KubeletServingSignerName:
		if !slices.Contains(spec.Groups, "system:nodes") || !strings.HasPrefix(spec.Username, "system:node:") {
			return csrIgnore, ""
		}
		if certificates.ValidateKubeletServingCSR(req, usages) != nil || req.Subject.CommonName != spec.Username {
			return csrIgnore, ""
		}
		name := strings.TrimPrefix(spec.Username, "system:node:")
		node, err := getNode(name)
		if err != nil {
			return csrRetry, fmt.Sprintf("node %s not known yet: %v", name, err)
		}
		if bad := foreignSANs(req, node); bad != "" {
			// Left pending: the node's addresses may still be updated.
			return csrRetry, fmt.Sprintf("serving certificate for node %s names %s, which is not one of the node's addresses", name, bad)
		}
		return csrApprove, "kubelet serving certificate for the node's own addresses"
	}
	return csrIgnore, ""
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
