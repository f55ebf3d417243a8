// Package plan holds the auto-deploy directory's decisions that need no cluster: which files
// are manifests, the add-on name of each, which ones are frozen or refused, where a document
// starts in its file, the order objects are applied in, and what a changed file prunes.
package plan

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// SkipSuffix freezes a manifest: with NAME.yaml.skip beside it, NAME.yaml is neither applied
// nor pruned, and its objects stay.
const SkipSuffix = ".skip"

// File is one manifest of the auto-deploy directory.
type File struct {
	// Path is the file's path; Rel is it relative to the directory, slash-separated.
	Path, Rel string
	// Name is its Addon's name.
	Name string
	// Skipped says a .skip file freezes it.
	Skipped bool
}

// Refusal is a manifest that is not deployed, and why.
type Refusal struct {
	Path, Reason string
}

// Reserved are the names of k1s's packaged add-ons, which no file may take; the value says
// whether --disable takes that name.
type Reserved map[string]bool

// Scan lists dir's manifests (*.yaml, *.yml, *.json, in subdirectories too; hidden files and
// directories are an editor's or a tool's, not manifests), sorted by path. A file whose add-on
// name is reserved, or taken by another file, is refused rather than fighting over the same
// objects: a name goes to the file that claimed it before (claimed maps names to paths), else
// to the first file in path order. A .skip file freezes its manifest even when the manifest
// itself is gone. A missing dir has no manifests.
func Scan(dir string, reserved Reserved, claimed map[string]string) ([]File, []Refusal, error) {
	var paths []string
	skip := map[string]bool{}
	var refused []Refusal
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == dir && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll
			}
			if path == dir {
				return err
			}
			refused = append(refused, Refusal{Path: path, Reason: fmt.Sprintf("cannot be read: %v", err)})
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if path != dir && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		if strings.HasSuffix(path, SkipSuffix) {
			skip[strings.TrimSuffix(path, SkipSuffix)] = true
			return nil
		}
		if IsManifest(path) {
			paths = append(paths, path)
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("reading the manifests directory: %w", err)
	}
	for target := range skip {
		if !slices.Contains(paths, target) && IsManifest(target) {
			paths = append(paths, target)
		}
	}
	sort.Strings(paths)
	names := map[string]string{}
	for _, p := range paths {
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return nil, nil, err
		}
		names[p] = filepath.ToSlash(rel)
	}
	// Files that keep the name they claimed go first.
	sort.SliceStable(paths, func(i, j int) bool {
		return claimed[AddonName(names[paths[i]])] == paths[i] && claimed[AddonName(names[paths[j]])] != paths[j]
	})
	var files []File
	owner := map[string]string{}
	for _, p := range paths {
		rel := names[p]
		name := AddonName(rel)
		if disableable, ok := reserved[name]; ok {
			reason := fmt.Sprintf("%q is the name of an add-on packaged with k1s: rename the file", name)
			if disableable {
				reason += fmt.Sprintf(" (to replace the packaged one, also start k1s with --disable %s)", name)
			}
			refused = append(refused, Refusal{Path: p, Reason: reason})
			continue
		}
		if first, ok := owner[name]; ok {
			refused = append(refused, Refusal{Path: p, Reason: fmt.Sprintf("its add-on name %q is already %s's: rename one of them", name, first)})
			continue
		}
		owner[name] = p
		files = append(files, File{Path: p, Rel: rel, Name: name, Skipped: skip[p]})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, refused, nil
}

// IsManifest says whether path names a manifest by its extension.
func IsManifest(path string) bool {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

var notInLabel = regexp.MustCompile(`[^a-z0-9-]+`)

// AddonName is the Addon name of a manifest at rel (relative to the directory): the path
// without its extension, its directories joined with dots, made a valid object name.
func AddonName(rel string) string {
	rel = strings.TrimSuffix(rel, filepath.Ext(rel))
	var labels []string
	for _, part := range strings.Split(strings.ToLower(rel), "/") {
		for _, l := range strings.Split(part, ".") {
			l = strings.Trim(notInLabel.ReplaceAllString(l, "-"), "-")
			if l != "" {
				labels = append(labels, l)
			}
		}
	}
	name := strings.Join(labels, ".")
	if len(name) > 253 {
		name = strings.TrimRight(name[:253], ".-")
	}
	if name == "" {
		return "manifest"
	}
	return name
}

// Checksum identifies a manifest's content.
func Checksum(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// Document is one YAML document of a file.
type Document struct {
	// Line is the file's line the document starts on, from 1.
	Line int
	Data []byte
}

var separator = regexp.MustCompile(`^---[ \t]*(#.*)?$`)

// Documents splits a multi-document manifest at its "---" lines, remembering where each
// document starts so that errors can name the file's line.
func Documents(data []byte) []Document {
	var docs []Document
	start, line := 1, 0
	var cur bytes.Buffer
	flush := func() {
		if len(bytes.TrimSpace(cur.Bytes())) > 0 {
			docs = append(docs, Document{Line: start, Data: append([]byte(nil), cur.Bytes()...)})
		}
		cur.Reset()
	}
	for _, l := range bytes.SplitAfter(data, []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		line++
		if separator.Match(bytes.TrimRight(l, "\r\n")) {
			flush()
			start = line + 1
			continue
		}
		cur.Write(l)
	}
	flush()
	return docs
}

var errLine = regexp.MustCompile(`\bline (\d+)(: )?`)

// FileError turns a YAML error inside doc into one that names the file's line.
func FileError(doc Document, err error) error {
	msg := err.Error()
	m := errLine.FindStringSubmatchIndex(msg)
	if m == nil {
		return fmt.Errorf("document at line %d: %s", doc.Line, msg)
	}
	n, _ := strconv.Atoi(msg[m[2]:m[3]])
	return fmt.Errorf("line %d: %s", doc.Line+n-1, strings.TrimSpace(msg[:m[0]]+msg[m[1]:]))
}

// Ref names an object a manifest owns.
type Ref struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace,omitempty"`
	Name       string `json:"name"`
}

// Group is the API group of the reference's apiVersion.
func (r Ref) Group() string {
	if i := strings.Index(r.APIVersion, "/"); i >= 0 {
		return r.APIVersion[:i]
	}
	return ""
}

// String is how logs and status name the object.
func (r Ref) String() string {
	kind := r.Kind
	if g := r.Group(); g != "" {
		kind += "." + g
	}
	if r.Namespace != "" {
		return kind + " " + r.Namespace + "/" + r.Name
	}
	return kind + " " + r.Name
}

// same ignores the version: an object moved to another version of its API is the same object.
// No namespace is the same as default: a namespaced object a manifest gives none goes there,
// and a ref recorded before its kind was known has none.
func (r Ref) same(o Ref) bool {
	return r.Group() == o.Group() && r.Kind == o.Kind && namespace(r.Namespace) == namespace(o.Namespace) && r.Name == o.Name
}

func namespace(ns string) string {
	if ns == "" {
		return "default"
	}
	return ns
}

// IsCRD says whether r is a CustomResourceDefinition.
func (r Ref) IsCRD() bool {
	return r.Kind == "CustomResourceDefinition" && r.Group() == "apiextensions.k8s.io"
}

func (r Ref) rank() int {
	switch {
	case r.IsCRD():
		return 0
	case r.Kind == "Namespace" && r.Group() == "":
		return 1
	}
	return 2
}

// Order is the order to apply refs in, as indexes: CustomResourceDefinitions first, so that
// objects of their kinds in the same file can follow, then Namespaces, then the file's order.
// Deleting goes the other way.
func Order(refs []Ref) []int {
	idx := make([]int, len(refs))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return refs[idx[a]].rank() < refs[idx[b]].rank() })
	return idx
}

// Stale are the refs of old that desired no longer has: what a changed file prunes.
func Stale(old, desired []Ref) []Ref {
	var out []Ref
	for _, o := range old {
		found := false
		for _, d := range desired {
			if o.same(d) {
				found = true
				break
			}
		}
		if !found {
			out = append(out, o)
		}
	}
	return out
}
