// Package spec is the HelmChart controller's API and decisions that need no cluster: k3s's
// helm.cattle.io/v1 kinds, the order values are layered in, and what makes a release up to date.
package spec

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The kinds of k3s's helm-controller (helm.cattle.io/v1), with its field names, so that k3s
// manifests apply unchanged (manifests/crds/helm.cattle.io.yaml). Fields that configure k3s's
// Job pod (jobImage, podSecurityContext…) are accepted and have no use here: k1s installs
// in-process.
var (
	ChartResource  = schema.GroupVersionResource{Group: "helm.cattle.io", Version: "v1", Resource: "helmcharts"}
	ConfigResource = schema.GroupVersionResource{Group: "helm.cattle.io", Version: "v1", Resource: "helmchartconfigs"}
)

// HelmChart is a chart to keep installed as a release named after the object.
type HelmChart struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              ChartSpec   `json:"spec"`
	Status            ChartStatus `json:"status,omitempty"`
}

// ChartSpec is k3s's HelmChart spec.
type ChartSpec struct {
	TargetNamespace       string                        `json:"targetNamespace,omitempty"`
	CreateNamespace       bool                          `json:"createNamespace,omitempty"`
	Chart                 string                        `json:"chart,omitempty"`
	Version               string                        `json:"version,omitempty"`
	Repo                  string                        `json:"repo,omitempty"`
	RepoCA                string                        `json:"repoCA,omitempty"`
	RepoCAConfigMap       *LocalObjectReference         `json:"repoCAConfigMap,omitempty"`
	Set                   map[string]intstr.IntOrString `json:"set,omitempty"`
	ValuesContent         string                        `json:"valuesContent,omitempty"`
	ValuesSecrets         []SecretSpec                  `json:"valuesSecrets,omitempty"`
	ChartContent          string                        `json:"chartContent,omitempty"`
	BackOffLimit          *int32                        `json:"backOffLimit,omitempty"`
	Timeout               *metav1.Duration              `json:"timeout,omitempty"`
	FailurePolicy         string                        `json:"failurePolicy,omitempty"`
	AuthSecret            *LocalObjectReference         `json:"authSecret,omitempty"`
	AuthPassCredentials   bool                          `json:"authPassCredentials,omitempty"`
	InsecureSkipTLSVerify bool                          `json:"insecureSkipTLSVerify,omitempty"`
	PlainHTTP             bool                          `json:"plainHTTP,omitempty"`
	DockerRegistrySecret  *LocalObjectReference         `json:"dockerRegistrySecret,omitempty"`
}

// LocalObjectReference names an object in the HelmChart's namespace.
type LocalObjectReference struct {
	Name string `json:"name"`
}

// SecretSpec names a Secret whose keys hold values files.
type SecretSpec struct {
	Name string   `json:"name"`
	Keys []string `json:"keys,omitempty"`
	// IgnoreUpdates is accepted for k3s's manifests: k1s reads the Secret at each install
	// or upgrade and watches no Secret.
	IgnoreUpdates bool `json:"ignoreUpdates,omitempty"`
}

// ChartStatus is what k1s reports of the release.
type ChartStatus struct {
	ObservedGeneration int64              `json:"observedGeneration,omitempty"`
	Release            string             `json:"release,omitempty"`
	ReleaseNamespace   string             `json:"releaseNamespace,omitempty"`
	Revision           int                `json:"revision,omitempty"`
	ReleaseStatus      string             `json:"releaseStatus,omitempty"`
	ChartVersion       string             `json:"chartVersion,omitempty"`
	Error              string             `json:"error,omitempty"`
	Failures           int32              `json:"failures,omitempty"`
	Digest             string             `json:"digest,omitempty"`
	Conditions         []metav1.Condition `json:"conditions,omitempty"`
}

// HelmChartConfig overrides the values of the HelmChart of the same name and namespace.
type HelmChartConfig struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              ConfigSpec `json:"spec"`
}

// ConfigSpec is k3s's HelmChartConfig spec.
type ConfigSpec struct {
	ValuesContent string       `json:"valuesContent,omitempty"`
	ValuesSecrets []SecretSpec `json:"valuesSecrets,omitempty"`
	FailurePolicy string       `json:"failurePolicy,omitempty"`
}
