package deploy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"

	"github.com/k1s-io/k1s/internal/deploy/plan"
)

// DefaultResync is how often the directory is read again even without a change notification
// (one may be lost), and failed manifests retried.
const DefaultResync = 15 * time.Second

// debounce lets an editor or a copy finish writing before a file is applied.
const debounce = 300 * time.Millisecond

// Controller deploys k1s's packaged add-ons and the manifests of the auto-deploy directory,
// each recorded as an Addon, and keeps the cluster converged to them: a file is applied at
// start and when it changes, what it no longer has is pruned, and a deleted file's objects are
// deleted. It is a controllers.Controller: one server runs it.
type Controller struct {
	// Dir is the auto-deploy directory; it is created if missing.
	Dir string
	// FS holds the packaged add-ons' manifests, CRDs the definitions of k1s's kinds, of
	// which CRDFiles are installed.
	FS, CRDs fs.FS
	CRDFiles []string
	// Packaged are the add-ons k1s ships; disabled ones are removed.
	Packaged []Addon
	Config   func() (*rest.Config, error)
	Client   func() (kubernetes.Interface, error)
	Log      logrus.FieldLogger
	// Resync defaults to DefaultResync.
	Resync time.Duration
}

// Name is how logs call the controller.
func (c *Controller) Name() string { return "add-on deployer" }

// source is one manifest to deploy.
type source struct {
	name, origin, path string
	data               []byte
	// err is why the manifest could not be read or rendered.
	err error
}

func (s source) String() string {
	if s.origin == sourcePackaged {
		return "packaged add-on " + s.name
	}
	return s.path
}

// deployer is one Run's state; only Run's goroutine uses it.
type deployer struct {
	c        *Controller
	a        *applier
	recorder record.EventRecorder
	records  map[string]*addonObject
	packaged []source
	reserved plan.Reserved
	// refused are the refusals already reported, by path.
	refused map[string]string
	// retries say when a failed manifest is tried again, by name.
	retries map[string]retry
	// removePending says a disabled add-on's removal failed, to be tried again.
	removePending bool
	// early are the results of the packaged add-ons applied before their records could be
	// read, by name: their first sync records them instead of applying them again.
	early map[string]error
}

// retry is when a failed manifest that did not change is applied again: a zero at waits for a
// change (a file that does not parse will not parse again); otherwise the delay doubles from
// the resync period up to maxRetryDelay, so that a manifest that keeps failing neither floods
// the log and the Events nor writes its Addon to etcd every period.
type retry struct {
	at    time.Time
	delay time.Duration
}

const maxRetryDelay = 5 * time.Minute

// Run deploys until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	cfg, err := c.Config()
	if err != nil {
		return err
	}
	a, err := newApplier(cfg)
	if err != nil {
		return err
	}
	cs, err := c.Client()
	if err != nil {
		return err
	}
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	defer broadcaster.Shutdown()
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cs.CoreV1().Events("")})
	d := &deployer{
		c: c, a: a,
		recorder: broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "k1s-deployer"}),
		reserved: plan.Reserved{},
		refused:  map[string]string{},
		retries:  map[string]retry{},
	}
	// The packaged add-ons (CoreDNS) first: a new cluster's DNS should not wait for k1s's
	// kinds to be established. Their records follow.
	d.renderPackaged()
	d.early = map[string]error{}
	for _, src := range d.packaged {
		if objs, err := Objects(src.data); src.err == nil && err == nil {
			d.early[src.name] = a.apply(ctx, src.name, objs)
		}
	}
	if err := d.installCRDs(ctx); err != nil {
		return err
	}
	if d.records, err = a.records(ctx); err != nil {
		return err
	}
	if err := d.removeDisabled(ctx); err != nil {
		c.Log.Warnf("%v (retrying)", err)
		d.removePending = true
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return fmt.Errorf("creating the manifests directory: %w", err)
	}
	watcher, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watching %s: %w", c.Dir, err)
	}
	defer watcher.Close()
	d.watch(watcher, c.Dir)
	d.sync(ctx, true)

	resync := time.NewTicker(d.resync())
	defer resync.Stop()
	var changed <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-watcher.Events:
			if !ok {
				return errors.New("the manifests directory's watch ended")
			}
			if ev.Has(fsnotify.Create) {
				if fi, err := os.Stat(ev.Name); err == nil && fi.IsDir() {
					d.watch(watcher, ev.Name)
				}
			}
			changed = time.After(debounce)
		case err, ok := <-watcher.Errors:
			if !ok {
				return errors.New("the manifests directory's watch ended")
			}
			c.Log.Debugf("watching %s: %v (reading it again)", c.Dir, err)
			changed = time.After(debounce)
		case <-changed:
			changed = nil
			d.sync(ctx, false)
		case <-resync.C:
			d.sync(ctx, false)
		}
	}
}

// installCRDs applies the definitions of k1s's kinds and waits until they are served.
func (d *deployer) installCRDs(ctx context.Context) error {
	var names []string
	for _, p := range d.c.CRDFiles {
		data, err := fs.ReadFile(d.c.CRDs, p)
		if err != nil {
			return err
		}
		objs, err := Objects(data)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if err := d.a.apply(ctx, FieldManager, objs); err != nil {
			return fmt.Errorf("installing k1s's kinds: %w", err)
		}
		for _, o := range objs {
			names = append(names, o.GetName())
		}
	}
	return d.a.waitEstablished(ctx, names)
}

// renderPackaged renders the enabled packaged add-ons and reserves every packaged name.
func (d *deployer) renderPackaged() {
	for _, addon := range d.c.Packaged {
		d.reserved[addon.Name] = !addon.Required
		if !addon.Disabled {
			src := source{name: addon.Name, origin: sourcePackaged}
			src.data, src.err = Render(d.c.FS, addon)
			d.packaged = append(d.packaged, src)
		}
	}
}

// removeDisabled removes the disabled packaged add-ons: their recorded objects, and those
// their manifest names that k1s applied before it kept records.
func (d *deployer) removeDisabled(ctx context.Context) error {
	for _, addon := range d.c.Packaged {
		if !addon.Disabled {
			continue
		}
		var refs []plan.Ref
		if rec := d.records[addon.Name]; rec != nil {
			refs = rec.Status.Objects
		}
		if manifest, err := Render(d.c.FS, addon); err == nil {
			if objs, err := Objects(manifest); err == nil {
				for _, o := range objs {
					refs = append(refs, refOf(o))
				}
			}
		}
		n, err := d.a.remove(ctx, addon.Name, refs, true)
		if err != nil {
			return fmt.Errorf("removing the disabled add-on %s: %w", addon.Name, err)
		}
		if err := d.a.deleteRecord(ctx, addon.Name); err != nil {
			return err
		}
		delete(d.records, addon.Name)
		if n > 0 {
			d.c.Log.Infof("Removed the disabled add-on %s (%d objects)", addon.Name, n)
		}
	}
	return nil
}

// watch adds dir and its subdirectories to the watch (fsnotify watches one level).
func (d *deployer) watch(w *fsnotify.Watcher, dir string) {
	_ = filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || !e.IsDir() {
			return nil
		}
		if path != dir && strings.HasPrefix(e.Name(), ".") {
			return fs.SkipDir
		}
		if err := w.Add(path); err != nil {
			d.c.Log.Warnf("Cannot watch %s for changes (they are applied every %s instead): %v", path, d.resync(), err)
		}
		return nil
	})
}

// sync applies every manifest that changed or failed (all of them when force is set) and
// deletes the objects of files that are gone.
func (d *deployer) sync(ctx context.Context, force bool) {
	if d.removePending {
		if err := d.removeDisabled(ctx); err != nil {
			d.c.Log.Debugf("%v (retrying)", err)
		} else {
			d.removePending = false
		}
	}
	claimed := map[string]string{}
	for name, rec := range d.records {
		if rec.Spec.Source == sourceFile {
			claimed[name] = rec.Spec.Path
		}
	}
	files, refused, err := plan.Scan(d.c.Dir, d.reserved, claimed)
	if err != nil {
		d.c.Log.Warnf("%v", err)
		return
	}
	d.report(refused)
	present := map[string]bool{}
	sources := append([]source(nil), d.packaged...)
	for _, f := range files {
		present[f.Name] = true
		if f.Skipped {
			continue
		}
		src := source{name: f.Name, origin: sourceFile, path: f.Path}
		src.data, src.err = os.ReadFile(f.Path)
		sources = append(sources, src)
	}
	var failed []source
	applied := false
	for _, src := range sources {
		ok, changed := d.apply(ctx, src, force)
		if !ok {
			failed = append(failed, src)
		}
		applied = applied || changed
	}
	// A file may use a kind a later file defines: once more, now that the later one applied.
	if applied {
		for _, src := range failed {
			if r, ok := d.retries[src.name]; ok && !r.at.IsZero() {
				delete(d.retries, src.name)
				d.apply(ctx, src, false)
			}
		}
	}
	for name, rec := range d.records {
		if rec.Spec.Source == sourceFile && !present[name] {
			d.removeFile(ctx, rec)
		}
	}
}

// report logs each refusal once, and records it as an Event on the Addon that has the name.
func (d *deployer) report(refused []plan.Refusal) {
	now := map[string]string{}
	for _, r := range refused {
		now[r.Path] = r.Reason
		if d.refused[r.Path] == r.Reason {
			continue
		}
		d.c.Log.Errorf("Manifest %s is not applied: %s", r.Path, r.Reason)
		name := plan.AddonName(filepath.ToSlash(strings.TrimPrefix(r.Path, d.c.Dir+string(filepath.Separator))))
		if rec := d.records[name]; rec != nil {
			d.recorder.Eventf(recordRef(rec), corev1.EventTypeWarning, "Refused", "%s is not applied: %s", r.Path, r.Reason)
		}
	}
	d.refused = now
}

// apply applies src if it changed since its record, or failed, or force is set. ok says it
// is applied; changed that this call applied it.
func (d *deployer) apply(ctx context.Context, src source, force bool) (ok, changed bool) {
	old := d.records[src.name]
	sum := plan.Checksum(src.data)
	if !force && old != nil && old.Spec.Checksum == sum && old.Spec.Path == src.path {
		if old.Status.Error == "" {
			return true, false
		}
		if r, ok := d.retries[src.name]; ok && (r.at.IsZero() || time.Now().Before(r.at)) {
			return false, false
		}
	}
	rec := &addonObject{Spec: addonSpec{Source: src.origin, Path: src.path, Checksum: sum}}
	rec.Name = src.name
	var previous []plan.Ref
	if old != nil {
		previous = old.Status.Objects
	}
	err := src.err
	var objs []*unstructured.Unstructured
	if err == nil {
		objs, err = Objects(src.data)
	}
	parsed := err == nil
	if !parsed {
		rec.Status.Objects = previous // a file that does not parse keeps what it owns
	} else {
		if early, ok := d.early[src.name]; ok {
			delete(d.early, src.name)
			err = early
		} else {
			err = d.a.apply(ctx, src.name, objs)
		}
		for _, o := range objs {
			rec.Status.Objects = append(rec.Status.Objects, refOf(o))
		}
		stale := plan.Stale(previous, rec.Status.Objects)
		if _, pruneErr := d.a.remove(ctx, src.name, stale, src.origin == sourcePackaged); pruneErr != nil {
			err = errors.Join(err, fmt.Errorf("pruning: %w", pruneErr))
			rec.Status.Objects = append(rec.Status.Objects, stale...) // pruned on the next try
		}
	}
	if err != nil {
		rec.Status.Error = strings.ReplaceAll(err.Error(), "\n", "; ")
	}
	same := old != nil && old.UID != "" && reflect.DeepEqual(old.Spec, rec.Spec) &&
		reflect.DeepEqual(old.Status.Objects, rec.Status.Objects) && old.Status.Error == rec.Status.Error
	if same {
		rec.UID, rec.Status.LastApplied = old.UID, old.Status.LastApplied
	} else {
		now := metav1.Now()
		rec.Status.LastApplied = &now
		stored, werr := d.a.writeRecord(ctx, rec)
		if werr != nil {
			d.c.Log.Warnf("%s: %v", src, werr)
			return false, false
		}
		rec.UID = stored.GetUID()
	}
	d.records[src.name] = rec
	if err != nil {
		r := retry{}
		if parsed {
			r.delay = min(max(2*d.retries[src.name].delay, d.resync()), maxRetryDelay)
			r.at = time.Now().Add(r.delay)
		}
		d.retries[src.name] = r
		if same && !force {
			return false, false
		}
		when := "it is read again when it changes"
		if parsed {
			when = "retried, and applied again when it changes"
		}
		d.c.Log.Warnf("Manifest %s: %s (%s)", src, rec.Status.Error, when)
		d.recorder.Eventf(recordRef(rec), corev1.EventTypeWarning, "ApplyFailed", "%s: %s", src, rec.Status.Error)
		return false, true
	}
	delete(d.retries, src.name)
	if old == nil || old.Spec.Checksum != sum || old.Status.Error != "" {
		log := d.c.Log.Infof
		if src.origin == sourcePackaged {
			log = d.c.Log.Debugf
		}
		log("Applied %s (%d objects)", src, len(objs))
		d.recorder.Eventf(recordRef(rec), corev1.EventTypeNormal, "Applied", "applied %d objects from %s", len(objs), src)
	}
	return true, true
}

// removeFile deletes what a deleted manifest owned, then its record.
func (d *deployer) removeFile(ctx context.Context, rec *addonObject) {
	n, err := d.a.remove(ctx, rec.Name, rec.Status.Objects, false)
	if err == nil {
		err = d.a.deleteRecord(ctx, rec.Name)
	}
	if err != nil {
		d.c.Log.Warnf("Manifest %s was deleted, but removing its objects failed (retrying): %v", rec.Spec.Path, err)
		return
	}
	delete(d.records, rec.Name)
	d.c.Log.Infof("Manifest %s was deleted: removed its %d objects", rec.Spec.Path, n)
}

func (d *deployer) resync() time.Duration {
	if d.c.Resync > 0 {
		return d.c.Resync
	}
	return DefaultResync
}

// recordRef is an Addon as an Event's object.
func recordRef(rec *addonObject) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(addonResource.GroupVersion().String())
	u.SetKind("Addon")
	u.SetNamespace(addonNamespace)
	u.SetName(rec.Name)
	u.SetUID(rec.UID)
	return u
}
