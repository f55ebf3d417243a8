package etcd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/robfig/cron/v3"
	"github.com/sirupsen/logrus"
	etcdutl "go.etcd.io/etcd/etcdutl/v3/snapshot"

	"github.com/k1s-io/k1s/internal/component"
	"github.com/k1s-io/k1s/internal/etcd/snapshot"
	"github.com/k1s-io/k1s/internal/logging"
)

// restoreRevisionBump is added to the restored database's revision, which is then marked
// compacted, as etcd advises for Kubernetes: clients (kubelets, informers) that saw a newer
// revision than the snapshot's must relist instead of waiting for a revision the restored
// cluster would reach only later, with other data.
const restoreRevisionBump = 1_000_000_000

// Snapshot streams a snapshot of the running etcd (etcd's format: the database, then its
// sha256) through an in-process client. The caller closes it.
func (s *Server) Snapshot(ctx context.Context) (io.ReadCloser, error) {
	client, err := s.localClient()
	if err != nil {
		return nil, err
	}
	rc, err := client.Snapshot(ctx)
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("asking etcd for a snapshot: %w", err)
	}
	return &snapshotStream{ReadCloser: rc, closeClient: client.Close}, nil
}

type snapshotStream struct {
	io.ReadCloser
	closeClient func() error
}

func (s *snapshotStream) Close() error {
	err := s.ReadCloser.Close()
	if cerr := s.closeClient(); err == nil {
		err = cerr
	}
	return err
}

// SnapshotSchedule is what the scheduled snapshots of a server are told.
type SnapshotSchedule struct {
	// Dir is where snapshots are written (--etcd-snapshot-dir).
	Dir string
	// Node names the snapshots' node (the member name).
	Node string
	// Spec is the cron expression, Schedule its parsed form.
	Spec     string
	Schedule cron.Schedule
	// Retention is how many scheduled snapshots of this node are kept.
	Retention int
	Compress  bool
	Log       *logrus.Logger
}

// NewSnapshotter returns the component that takes a snapshot of s at every time of the
// schedule and prunes the scheduled ones beyond the retention. A failed snapshot is logged
// and retried at the next time: a full disk must not stop the control plane.
func NewSnapshotter(s *Server, c SnapshotSchedule) component.Component {
	run := func(ctx context.Context) error {
		c.Log.Infof("etcd snapshots scheduled at %q in %s, keeping %d", c.Spec, c.Dir, c.Retention)
		for {
			next := c.Schedule.Next(time.Now())
			timer := time.NewTimer(time.Until(next))
			select {
			case <-ctx.Done():
				timer.Stop()
				return nil
			case <-timer.C:
			}
			meta, pruned, err := scheduledSnapshot(ctx, s, c)
			switch {
			case ctx.Err() != nil:
				return nil
			case err != nil:
				c.Log.Errorf("scheduled etcd snapshot failed: %v", err)
			default:
				c.Log.Infof("etcd snapshot %s saved in %s (%d bytes, sha256 %s)", meta.Name, c.Dir, meta.Size, meta.SHA256)
				if len(pruned) > 0 {
					c.Log.Infof("etcd snapshots pruned (retention %d): %v", c.Retention, pruned)
				}
			}
		}
	}
	return component.NewFunc("etcd-snapshots", run, nil)
}

func scheduledSnapshot(ctx context.Context, s *Server, c SnapshotSchedule) (snapshot.Metadata, []string, error) {
	created := time.Now().UTC()
	meta := snapshot.Metadata{Name: snapshot.FileName(snapshot.ScheduledPrefix, c.Node, created, c.Compress),
		Node: c.Node, Created: created, Compressed: c.Compress}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	stream, err := s.Snapshot(ctx)
	if err != nil {
		return meta, nil, err
	}
	defer stream.Close()
	if meta, err = snapshot.Write(c.Dir, meta, stream); err != nil {
		return meta, nil, err
	}
	pruned, err := snapshot.Prune(c.Dir, snapshot.ScheduledPrefix, c.Node, c.Retention)
	if err != nil {
		return meta, pruned, fmt.Errorf("snapshot %s saved, but pruning old ones failed: %w", meta.Name, err)
	}
	return meta, pruned, nil
}

// RestoreConfig says where a restore works.
type RestoreConfig struct {
	// Snapshot is the snapshot file.
	Snapshot string
	// Staging is an empty directory beside the etcd data directory (same file system), removed
	// afterwards.
	Staging string
	// Aside is where the current etcd data directory is moved; it is never deleted.
	Aside string
}

// Restore replaces the (stopped) etcd's data with the snapshot's: a one-member cluster of this
// server, with the member name and peer URL it starts with. The snapshot is checked first (its
// recorded sha256, etcd's own); the current data is moved to Aside only once the restored data
// is complete, and moved back if the last step fails. The caller holds the data directory.
// movedAside says whether there was current data (now in r.Aside).
func (s *Server) Restore(r RestoreConfig) (movedAside bool, err error) {
	if err := os.RemoveAll(r.Staging); err != nil {
		return false, fmt.Errorf("clearing %s: %w", r.Staging, err)
	}
	if err := os.MkdirAll(r.Staging, 0o700); err != nil {
		return false, fmt.Errorf("creating %s: %w", r.Staging, err)
	}
	defer os.RemoveAll(r.Staging)
	db := filepath.Join(r.Staging, "snapshot.db")
	if _, err := snapshot.Extract(r.Snapshot, db); err != nil {
		return false, err
	}
	peers := make([]string, 0, len(s.cfg.AdvertisePeerUrls))
	for _, u := range s.cfg.AdvertisePeerUrls {
		peers = append(peers, u.String())
	}
	restored := filepath.Join(r.Staging, "etcd")
	err = etcdutl.NewV3(logging.NewZap(s.log, "etcd", s.stopping)).Restore(etcdutl.RestoreConfig{
		SnapshotPath:        db,
		Name:                s.cfg.Name,
		OutputDataDir:       restored,
		PeerURLs:            peers,
		InitialCluster:      s.cfg.InitialCluster,
		InitialClusterToken: s.cfg.InitialClusterToken,
		RevisionBump:        restoreRevisionBump,
		MarkCompacted:       true,
	})
	if err != nil {
		return false, fmt.Errorf("restoring snapshot %s: %w", r.Snapshot, err)
	}
	if _, err := os.Stat(s.cfg.Dir); err == nil {
		if err := os.Rename(s.cfg.Dir, r.Aside); err != nil {
			return false, fmt.Errorf("moving the current etcd data aside: %w", err)
		}
		movedAside = true
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("the current etcd data: %w", err)
	}
	if err := os.Rename(restored, s.cfg.Dir); err != nil {
		if movedAside {
			_ = os.Rename(r.Aside, s.cfg.Dir)
		}
		return false, fmt.Errorf("putting the restored etcd data in place (the current data is unchanged): %w", err)
	}
	return movedAside, nil
}

// DataDir is etcd's data directory.
func (s *Server) DataDir() string { return s.cfg.Dir }
