package localstorage

import (
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func claim(modes ...v1.PersistentVolumeAccessMode) *v1.PersistentVolumeClaim {
	return &v1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "data"},
		Spec: v1.PersistentVolumeClaimSpec{
			AccessModes: modes,
			Resources:   v1.VolumeResourceRequirements{Requests: v1.ResourceList{v1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}
}

func TestNewVolume(t *testing.T) {
	node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{hostnameLabel: "host-1"}}}
	pv, err := NewVolume("pvc-1", claim(v1.ReadWriteOnce), v1.PersistentVolumeReclaimDelete, node, "/var/lib/k1s/storage")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := pv.Spec.HostPath.Path, "/var/lib/k1s/storage/pvc-1_apps_data"; got != want {
		t.Errorf("path %q, want %q", got, want)
	}
	if *pv.Spec.HostPath.Type != v1.HostPathDirectory {
		t.Errorf("hostPath type %s: the kubelet must not make the directory itself", *pv.Spec.HostPath.Type)
	}
	if got := pv.Spec.NodeAffinity.Required.NodeSelectorTerms[0].MatchExpressions[0].Values[0]; got != "host-1" {
		t.Errorf("node affinity on %q, want the node's hostname label host-1", got)
	}
	if pv.Labels[NodeLabel] != "n1" || pv.Finalizers[0] != Finalizer {
		t.Errorf("labels %v finalizers %v: the node finds its volumes by label and removes them before the finalizer", pv.Labels, pv.Finalizers)
	}
	if q := pv.Spec.Capacity[v1.ResourceStorage]; q.String() != "1Gi" {
		t.Errorf("capacity %s", q.String())
	}
}

func TestNewVolumeRefusals(t *testing.T) {
	node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}
	for name, tc := range map[string]struct {
		claim *v1.PersistentVolumeClaim
		dir   string
		want  string
	}{
		"ReadWriteMany":    {claim(v1.ReadWriteOnce, v1.ReadWriteMany), "/s", "access mode ReadWriteMany is not supported"},
		"ReadOnlyMany":     {claim(v1.ReadOnlyMany), "/s", "access mode ReadOnlyMany"},
		"no directory":     {claim(v1.ReadWriteOnce), "", "has not published its local storage directory"},
		"relative":         {claim(v1.ReadWriteOnce), "storage", "has not published"},
		"ReadWriteOncePod": {claim(v1.ReadWriteOncePod), "/s", ""},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := NewVolume("pvc-1", tc.claim, v1.PersistentVolumeReclaimDelete, node, tc.dir)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestDecide(t *testing.T) {
	now := metav1.Now()
	volume := func(path string, policy v1.PersistentVolumeReclaimPolicy, deleted bool, finalizers ...string) *v1.PersistentVolume {
		pv := &v1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pvc-1", Finalizers: finalizers}}
		pv.Spec.HostPath = &v1.HostPathVolumeSource{Path: path}
		pv.Spec.PersistentVolumeReclaimPolicy = policy
		if deleted {
			pv.DeletionTimestamp = &now
		}
		return pv
	}
	const dir = "/data/storage"
	for name, tc := range map[string]struct {
		pv      *v1.PersistentVolume
		want    Action
		wantErr bool
	}{
		"new volume":               {volume(dir+"/pvc-1_a_b", v1.PersistentVolumeReclaimDelete, false, Finalizer), Create, false},
		"deleted":                  {volume(dir+"/pvc-1_a_b", v1.PersistentVolumeReclaimDelete, true, Finalizer), Remove, false},
		"deleted while in use":     {volume(dir+"/pvc-1_a_b", v1.PersistentVolumeReclaimDelete, true, Finalizer, protectionFinalizer), Keep, false},
		"deleted, already removed": {volume(dir+"/pvc-1_a_b", v1.PersistentVolumeReclaimDelete, true), Keep, false},
		"retained":                 {volume(dir+"/pvc-1_a_b", v1.PersistentVolumeReclaimRetain, true, Finalizer), Release, false},
		"outside the directory":    {volume("/etc", v1.PersistentVolumeReclaimDelete, true, Finalizer), Keep, true},
		"the directory itself":     {volume(dir, v1.PersistentVolumeReclaimDelete, true, Finalizer), Keep, true},
		"escaping":                 {volume(dir+"/../x", v1.PersistentVolumeReclaimDelete, true, Finalizer), Keep, true},
		"nested":                   {volume(dir+"/a/b", v1.PersistentVolumeReclaimDelete, true, Finalizer), Keep, true},
	} {
		t.Run(name, func(t *testing.T) {
			got, _, err := Decide(tc.pv, dir)
			if got != tc.want || (err != nil) != tc.wantErr {
				t.Fatalf("Decide = %v, %v; want %v (error %v)", got, err, tc.want, tc.wantErr)
			}
		})
	}
}
