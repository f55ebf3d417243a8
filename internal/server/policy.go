package server

import (
	"fmt"
	"os"
	"strings"

	"github.com/k1s-io/k1s/internal/fileutil"
)

// Pod Security levels (--pod-security-default).
const (
	PodSecurityPrivileged = "privileged"
	PodSecurityBaseline   = "baseline"
	PodSecurityRestricted = "restricted"
	// DefaultPodSecurity is enforced in every namespace but kube-system unless a namespace's
	// labels say otherwise: a pod that could take over the node (privileged, host paths, host
	// namespaces) needs a namespace an admin labelled for it.
	DefaultPodSecurity = PodSecurityBaseline
)

// admissionConfig enforces the Pod Security level, and warns and audits what "restricted"
// would refuse, everywhere but kube-system (k1s's own system pods). Hardened, it also
// configures EventRateLimit (the k3s hardening guide's server-wide limit).
func admissionConfig(level string, hardened bool) []byte {
	out := fmt.Sprintf(`apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: PodSecurity
  configuration:
    apiVersion: pod-security.admission.config.k8s.io/v1
    kind: PodSecurityConfiguration
    defaults:
      enforce: %s
      enforce-version: latest
      audit: restricted
      audit-version: latest
      warn: restricted
      warn-version: latest
    exemptions:
      namespaces: [kube-system]
`, level)
	if hardened {
		out += `- name: EventRateLimit
  configuration:
    apiVersion: eventratelimit.admission.k8s.io/v1alpha1
    kind: Configuration
    limits:
    - type: Server
      qps: 5000
      burst: 20000
`
	}
	return []byte(out)
}

// What --hardened changes in the control plane, besides restricted Pod Security, secrets
// encryption and the node's settings (see the agent): the k3s hardening guide's settings that
// k1s does not already default to.
var (
	hardenedAPIServerArgs = map[string]string{
		"enable-admission-plugins":                "NodeRestriction,EventRateLimit",
		"service-account-extend-token-expiration": "false",
	}
	hardenedControllerManagerArgs = map[string]string{
		"terminated-pod-gc-threshold": "10",
	}
)

// auditPolicy logs who did what to which object, never a request's or response's body (so no
// Secret's data ever reaches the log), and skips the read-only chatter of health checks.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  nonResourceURLs: [/healthz*, /livez*, /readyz*, /version]
- level: None
  resources:
  - group: coordination.k8s.io
    resources: [leases]
  verbs: [get, update]
- level: Metadata
`

// Audit log rotation: the k3s hardening guide's values.
var auditLogArgs = map[string]string{
	"audit-log-maxage":    "30",
	"audit-log-maxbackup": "10",
	"audit-log-maxsize":   "100",
}

// validatePodSecurity checks --pod-security-default.
func validatePodSecurity(level string) error {
	switch level {
	case PodSecurityPrivileged, PodSecurityBaseline, PodSecurityRestricted:
		return nil
	}
	return fmt.Errorf("--pod-security-default %q: choose %s", level, strings.Join([]string{PodSecurityPrivileged, PodSecurityBaseline, PodSecurityRestricted}, ", "))
}

// writePolicies writes the admission configuration and, unless the user gave one, the audit
// policy.
func (c *completedConfig) writePolicies() error {
	if err := fileutil.WriteAtomic(c.files.AdmissionConfig(), admissionConfig(c.PodSecurityDefault, c.Hardened), 0o600); err != nil {
		return err
	}
	if c.AuditPolicyFile != "" {
		return nil
	}
	return fileutil.WriteAtomic(c.files.AuditPolicy(), []byte(auditPolicy), 0o600)
}

// auditPolicyFile is the policy the apiserver reads.
func (c *completedConfig) auditPolicyFile() string {
	if c.AuditPolicyFile != "" {
		return c.AuditPolicyFile
	}
	return c.files.AuditPolicy()
}

func checkReadable(flag, path string) error {
	if path == "" {
		return nil
	}
	if _, err := os.ReadFile(path); err != nil {
		return fmt.Errorf("%s %s: %w", flag, path, err)
	}
	return nil
}
