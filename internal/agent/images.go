package agent

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	client "github.com/containerd/containerd/v2/client"
	"github.com/containerd/platforms"
	"github.com/klauspost/compress/zstd"

	"github.com/k1s-io/k1s/internal/component"
	k1scontainerd "github.com/k1s-io/k1s/internal/containerd"
	"github.com/k1s-io/k1s/internal/fileutil"
)

// pinnedLabels mark an image as the CRI's, and pinned so that the kubelet's image garbage
// collection never removes it: nothing can pull it back.
var pinnedLabels = map[string]string{
	"io.cri-containerd.image":  "managed",
	"io.cri-containerd.pinned": "pinned",
}

// newImageImport imports the payload's system images and every tarball in the images
// directory into containerd, once containerd serves. A tarball that cannot be imported is
// logged and skipped: one bad file must not keep the node from starting.
func (a *Agent) newImageImport(containerd *k1scontainerd.Process, extract component.Component, systemImages []string) component.Component {
	return component.Task("image import", "importing images into containerd", func(ctx context.Context, progress component.Progress) error {
		// Started in the background beside containerd and the payload's extraction: wait for
		// both.
		for _, dep := range []component.Component{extract, containerd} {
			for dep.Ready(ctx) != nil {
				progress(dep.Name())
				select {
				case <-ctx.Done():
					return nil
				case <-dep.Exited():
					return fmt.Errorf("%s ended before the images were imported", dep.Name())
				case <-time.After(50 * time.Millisecond):
				}
			}
		}
		c, err := containerd.Client()
		if err != nil {
			return err
		}
		user, _ := filepath.Glob(filepath.Join(a.cfg.files.ImagesDir(), "*"))
		sort.Strings(user)
		recordFile := a.cfg.files.ImportedImages()
		imported := loadImportRecord(recordFile)
		for _, path := range append(append([]string(nil), systemImages...), user...) {
			if !isImageTarball(path) {
				continue
			}
			stamp := fileStamp(path)
			if rec, ok := imported[path]; ok && rec.Stamp == stamp && allPresent(ctx, c, rec.Images) {
				continue
			}
			names, err := importTarball(ctx, c, path, a.snapshotter)
			if err != nil {
				if slices.Contains(systemImages, path) {
					return fmt.Errorf("importing system image %s: %w", path, err)
				}
				a.cfg.Log.Warnf("skipping image tarball %s: %v", path, err)
				continue
			}
			a.cfg.Log.Debugf("imported %s from %s", strings.Join(names, ", "), path)
			imported[path] = importedTarball{Stamp: stamp, Images: names}
		}
		if err := saveImportRecord(recordFile, imported); err != nil {
			a.cfg.Log.Warnf("recording imported images: %v", err)
		}
		return nil
	})
}

func isImageTarball(path string) bool {
	for _, ext := range []string{".tar", ".tar.gz", ".tgz", ".tar.zst", ".tar.zstd"} {
		if strings.HasSuffix(path, ext) {
			return true
		}
	}
	return false
}

// importTarball imports one (possibly compressed) image tarball, pinned, and unpacks it so that
// the first container starts without waiting.
func importTarball(ctx context.Context, c *client.Client, path, snapshotter string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = f
	switch {
	case strings.HasSuffix(path, ".gz"), strings.HasSuffix(path, ".tgz"):
		gz, err := gzip.NewReader(f)
		if err != nil {
			return nil, err
		}
		defer gz.Close()
		r = gz
	case strings.HasSuffix(path, ".zst"), strings.HasSuffix(path, ".zstd"):
		zr, err := zstd.NewReader(f)
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		r = zr
	}
	ctx, done, err := c.WithLease(ctx)
	if err != nil {
		return nil, err
	}
	defer done(ctx)
	imgs, err := c.Import(ctx, r, client.WithImageLabels(pinnedLabels), client.WithAllPlatforms(false))
	if err != nil {
		return nil, err
	}
	if len(imgs) == 0 {
		return nil, fmt.Errorf("no image in the tarball")
	}
	var names []string
	for _, img := range imgs {
		image := client.NewImageWithPlatform(c, img, platforms.DefaultStrict())
		if err := image.Unpack(ctx, snapshotter); err != nil {
			return nil, fmt.Errorf("unpacking %s: %w", img.Name, err)
		}
		names = append(names, img.Name)
	}
	return names, nil
}

// importedTarball records what a tarball gave, so that an unchanged tarball whose images
// containerd still has is not imported and unpacked again at every start.
type importedTarball struct {
	Stamp  string   `json:"stamp"`
	Images []string `json:"images"`
}

func fileStamp(path string) string {
	info, err := os.Stat(path)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%d:%d", info.Size(), info.ModTime().UnixNano())
}

func loadImportRecord(path string) map[string]importedTarball {
	record := map[string]importedTarball{}
	if data, err := os.ReadFile(path); err == nil {
		_ = json.Unmarshal(data, &record) // a damaged record only means importing again
	}
	return record
}

func saveImportRecord(path string, record map[string]importedTarball) error {
	data, err := json.Marshal(record)
	if err != nil {
		return err
	}
	return fileutil.WriteAtomic(path, data, 0o600)
}

func allPresent(ctx context.Context, c *client.Client, names []string) bool {
	for _, name := range names {
		if _, err := c.ImageService().Get(ctx, name); err != nil {
			return false
		}
	}
	return len(names) > 0
}
