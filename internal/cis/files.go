package cis

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// stat is a file's mode and owner.
func stat(path string) (fs.FileMode, owner, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, owner{}, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, owner{}, fmt.Errorf("%s: no owner information", path)
	}
	return fi.Mode(), owner{uid: st.Uid, gid: st.Gid}, nil
}

// String shows an owner by name where the host knows it.
func (o owner) String() string {
	u := strconv.FormatUint(uint64(o.uid), 10)
	if found, err := user.LookupId(u); err == nil {
		u = found.Username
	}
	g := strconv.FormatUint(uint64(o.gid), 10)
	if found, err := user.LookupGroupId(g); err == nil {
		g = found.Name
	}
	return u + ":" + g
}

// fileSet is what a file check looks at: the files and what to call them in a finding.
type fileSet struct {
	paths []string
	// noun names the files in a finding ("key files").
	noun string
	// optional: none of the files existing passes ("if the file exists").
	optional bool
}

// survey stats a set of files: those found, with their modes and owners, those missing, and
// any errors.
func (c *config) survey(set fileSet) (found []string, modes map[string]fs.FileMode, owners map[string]owner, missing, errs []string) {
	modes, owners = map[string]fs.FileMode{}, map[string]owner{}
	seen := map[string]bool{}
	for _, p := range set.paths {
		if p == "" || seen[p] {
			continue
		}
		seen[p] = true
		mode, own, err := stat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			missing = append(missing, p)
		case err != nil:
			errs = append(errs, err.Error())
		default:
			found = append(found, p)
			modes[p], owners[p] = mode, own
		}
	}
	return found, modes, owners, missing, errs
}

// permissions passes when every file of set exists (or the set is optional) and has no
// permission bit outside limit.
func (c *config) permissions(set fileSet, limit fs.FileMode) outcome {
	found, modes, _, missing, errs := c.survey(set)
	if len(errs) > 0 {
		return unverified("cannot stat %s", strings.Join(errs, "; "))
	}
	var bad []string
	for _, p := range found {
		if perm := modes[p].Perm(); perm&^limit != 0 {
			bad = append(bad, fmt.Sprintf("%s %04o", c.rel(p)[0], perm))
		}
	}
	if len(bad) > 0 {
		return fail("more permissive than %04o: %s", limit, summarize(bad))
	}
	return c.allFound(set, found, missing, func() string {
		if len(found) == 1 {
			return fmt.Sprintf("%s %04o", c.rel(found[0])[0], modes[found[0]].Perm())
		}
		return fmt.Sprintf("%d %s, all %04o or stricter", len(found), set.noun, limit)
	})
}

// ownership passes when every file of set exists (or the set is optional) and is owned by
// root:root.
func (c *config) ownership(set fileSet) outcome {
	found, _, owners, missing, errs := c.survey(set)
	if len(errs) > 0 {
		return unverified("cannot stat %s", strings.Join(errs, "; "))
	}
	var bad []string
	for _, p := range found {
		if owners[p] != c.wantOwner {
			bad = append(bad, fmt.Sprintf("%s %s", c.rel(p)[0], owners[p]))
		}
	}
	if len(bad) > 0 {
		return fail("not owned by %s: %s", c.wantOwner, summarize(bad))
	}
	return c.allFound(set, found, missing, func() string {
		if len(found) == 1 {
			return fmt.Sprintf("%s %s", c.rel(found[0])[0], owners[found[0]])
		}
		return fmt.Sprintf("%d %s, all %s", len(found), set.noun, c.wantOwner)
	})
}

// allFound is the outcome of a file check whose found files all comply. With none found
// (and the set not optional) there is nothing to judge: UNVERIFIED.
func (c *config) allFound(set fileSet, found, missing []string, show func() string) outcome {
	if len(found) == 0 {
		if set.optional && len(missing) > 0 {
			return pass("%s does not exist", strings.Join(c.rel(missing...), ", "))
		}
		if len(missing) == 0 {
			return unverified("no %s recorded", set.noun)
		}
		return unverified("not found: %s", strings.Join(c.rel(missing...), ", "))
	}
	out := show()
	if len(missing) > 0 {
		out += " (not present: " + strings.Join(c.rel(missing...), ", ") + ")"
	}
	return pass("%s", out)
}

// summarize lists up to a handful of items.
func summarize(items []string) string {
	const most = 6
	if len(items) <= most {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:most], ", "), len(items)-most)
}

func (c *config) tlsDir() string { return c.dir.Server().TLSDir() }

// pkiFiles are the control plane's PKI: every file and directory under server/tls (all), its
// certificates (*.crt) and keys (*.key), and the certificates and keys the server
// components' flags name wherever they are.
func (c *config) pkiFiles() (all, certs, keys []string, err error) {
	err = filepath.WalkDir(c.tlsDir(), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		all = append(all, path)
		switch filepath.Ext(path) {
		case ".crt":
			certs = append(certs, path)
		case ".key":
			keys = append(keys, path)
		}
		return nil
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("reading the PKI directory: %w", err)
	}
	flagCerts, flagKeys := c.flagFiles()
	certs, keys = append(certs, flagCerts...), append(keys, flagKeys...)
	all = append(all, flagCerts...)
	all = append(all, flagKeys...)
	return all, certs, keys, nil
}

// flagFiles are the certificate and key files the server components' flags name.
func (c *config) flagFiles() (certs, keys []string) {
	for _, name := range serverComponents {
		flags := c.comps[name].flags
		names := make([]string, 0, len(flags))
		for k := range flags {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			switch v := flags[k]; flagFileKind(k, v) {
			case "cert":
				certs = append(certs, v)
			case "key":
				keys = append(keys, v)
			}
		}
	}
	return certs, keys
}

// flagFileKind tells a flag that names a certificate ("cert") or a private key ("key").
func flagFileKind(key, value string) string {
	if value == "" || value == "true" || value == "false" {
		return ""
	}
	for _, suffix := range []string{"key-file", "keyfile", "-key"} {
		if strings.HasSuffix(key, suffix) {
			return "key"
		}
	}
	for _, suffix := range []string{"cert-file", "certfile", "ca-file", "cafile", "-certificate", "-authority"} {
		if strings.HasSuffix(key, suffix) {
			return "cert"
		}
	}
	return ""
}

// kubeconfigs are the kubeconfig files a component's flags name.
func (c *config) kubeconfigs(comp string) fileSet {
	set := fileSet{noun: "kubeconfigs"}
	for _, k := range []string{"kubeconfig", "authentication-kubeconfig", "authorization-kubeconfig"} {
		if v, ok := c.flag(comp, k); ok && v != "" {
			set.paths = append(set.paths, v)
		}
	}
	return set
}

// adminKubeconfigs are the admin credentials: k1s's own (supervisor), the break-glass one,
// and the one k1s writes for the user.
func (c *config) adminKubeconfigs() fileSet {
	return fileSet{noun: "admin kubeconfigs", paths: []string{
		c.dir.Server().SupervisorKubeconfig(),
		c.dir.Server().BreakGlassKubeconfig(),
		c.adminKubeconfig,
	}}
}

// proxyKubeconfig is kube-proxy's kubeconfig (k1s's default: the kubelet's).
func (c *config) proxyKubeconfig() fileSet {
	path, ok := c.flag(kubeProxy, "kubeconfig")
	if !ok || path == "" {
		path = c.dir.Node().KubeletKubeconfig()
	}
	return fileSet{noun: "kubeconfigs", paths: []string{path}, optional: true}
}

// kubeletKubeconfig is the kubelet's kubeconfig.
func (c *config) kubeletKubeconfig() fileSet {
	path, ok := c.flag(kubelet, "kubeconfig")
	if !ok || path == "" {
		path = c.dir.Node().KubeletKubeconfig()
	}
	return fileSet{noun: "kubeconfigs", paths: []string{path}}
}

// kubeletClientCA is the CA file the kubelet verifies client certificates with.
func (c *config) kubeletClientCA() fileSet {
	set := fileSet{noun: "client CA files"}
	if path, _, _ := c.kubeletSetting("client-ca-file"); path != "" {
		set.paths = []string{path}
	}
	return set
}
