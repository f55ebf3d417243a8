// Package cis reports how a k1s node measures up against the CIS Kubernetes Benchmark, read
// from what a running k1s records in its data directory: each component's effective command
// line (server/etc/args/*.json, agent/etc/args/*.json), the kubelet's config file, the
// apiserver's admission, authentication and encryption configurations, and the modes and
// owners of the files they name.
//
// The checks are those of CIS Kubernetes Benchmark v1.10 (numbered as in v1.9, which has the
// same IDs for these sections) that apply to a single-binary distribution, as k3s's CIS
// self-assessment guide lists them, plus two checks v1.11 adds (1.2.30, 4.2.14) that k1s's
// hardened profile addresses. Automated checks PASS or FAIL; manual checks PASS where the
// recorded configuration clearly meets the recommendation and WARN otherwise; checks that do
// not apply to this host or to k1s are INFO, with the reason. A check whose input is missing or
// unreadable (a record, a file a flag names, a file to stat) is UNVERIFIED, with what is
// missing: never PASS from what it cannot see.
//
// It imports nothing of Kubernetes: it must stay cheap to link into the k1s binary.
package cis

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/k1s-io/k1s/internal/layout"
)

// Options say where to read a node's configuration.
type Options struct {
	// DataDir is k1s's --data-dir (default /var/lib/k1s).
	DataDir string
	// AdminKubeconfig is the admin kubeconfig k1s writes (--write-kubeconfig, default
	// /etc/k1s/k1s.yaml).
	AdminKubeconfig string
}

// Status is the outcome of one check.
type Status string

const (
	Pass Status = "PASS"
	Fail Status = "FAIL"
	// Warn is a manual check whose recommendation the recorded configuration does not
	// clearly meet: Found says what was found, for a person to judge.
	Warn Status = "WARN"
	// Info is a check that does not apply here; Found says why.
	Info Status = "INFO"
	// Unverified is a check whose input cannot be read (a record or file missing or
	// unreadable): Found says which, and the check neither passes nor fails.
	Unverified Status = "UNVERIFIED"
)

// Result is one check's outcome.
type Result struct {
	ID, Title string
	Automated bool
	Status    Status
	// Found is the setting the check read, or why it does not apply.
	Found string
}

// Run evaluates every check against the configuration recorded under opts.DataDir. It fails
// only when the data directory holds no recorded configuration at all; a component whose
// record is missing has its checks reported as INFO, one whose record is unreadable as
// UNVERIFIED.
func Run(opts Options) ([]Result, error) {
	return run(opts, owner{uid: 0, gid: 0})
}

// run is Run with the owner the ownership checks expect (root:root outside tests).
func run(opts Options, want owner) ([]Result, error) {
	c, err := load(opts, want)
	if err != nil {
		return nil, err
	}
	results := make([]Result, 0, len(checks))
	for _, ch := range checks {
		results = append(results, c.evaluate(ch))
	}
	return results, nil
}

func (c *config) evaluate(ch check) Result {
	r := Result{ID: ch.id, Title: ch.title, Automated: ch.automated}
	var o outcome
	if comp := c.comps[ch.needs]; comp != nil && !comp.present {
		o = info("%s does not run on this host (no %s)", comp.name, strings.Join(c.rel(comp.files...), " or "))
	} else if comp != nil && comp.err != nil {
		o = unverified("%v", comp.err)
	} else {
		o = ch.eval(c)
	}
	r.Status, r.Found = o.status, o.found
	if !ch.automated && r.Status == Fail {
		r.Status = Warn
	}
	return r
}

// Print writes one line per check and a summary line, and returns how many checks FAILed
// plus how many automated ones are UNVERIFIED: a check it cannot see is not a pass.
func Print(w io.Writer, results []Result) (failed int) {
	counts := map[Status]int{}
	manualChecks := 0
	for _, r := range results {
		kind := "manual"
		if r.Automated {
			kind = "automated"
			if r.Status == Unverified {
				failed++
			}
		} else {
			manualChecks++
		}
		line := fmt.Sprintf("[%s] %s %s (%s)", r.Status, r.ID, r.Title, kind)
		if r.Found != "" {
			line += ": " + r.Found
		}
		fmt.Fprintln(w, line)
		counts[r.Status]++
	}
	fmt.Fprintf(w, "%d checks PASS, %d FAIL, %d UNVERIFIED, %d WARN, %d INFO; %d checks are manual: their result is for a person to judge\n",
		counts[Pass], counts[Fail], counts[Unverified], counts[Warn], counts[Info], manualChecks)
	return failed + counts[Fail]
}

// Components, by the name of their record.
const (
	apiserver         = "kube-apiserver"
	controllerManager = "kube-controller-manager"
	scheduler         = "kube-scheduler"
	etcd              = "etcd"
	kubelet           = "kubelet"
	kubeProxy         = "kube-proxy"
)

var serverComponents = []string{apiserver, controllerManager, scheduler, etcd}

// owner is a file's owner, as numeric ids.
type owner struct{ uid, gid uint32 }

// config is what the checks read.
type config struct {
	dataDir, adminKubeconfig string
	dir                      layout.DataDir
	// wantOwner is root:root outside tests.
	wantOwner owner
	comps     map[string]*component
	// kubeletFile is the parsed kubelet config file (nil when there is none), which the
	// kubelet's recorded flags override.
	kubeletFile     map[string]any
	kubeletFilePath string
	// kubeletArgsRecorded is whether the kubelet's command line is recorded: without it a
	// flag may override any setting of the file.
	kubeletArgsRecorded bool
}

// component is one component's recorded command line.
type component struct {
	name string
	// files are the records that make the component present.
	files   []string
	present bool
	// err is why a present component's record cannot be read.
	err error
	// flags are its --key=value arguments; a key given more than once keeps its last value.
	flags map[string]string
}

func load(opts Options, want owner) (*config, error) {
	dataDir := opts.DataDir
	if dataDir == "" {
		dataDir = layout.DefaultDataDir
	}
	admin := opts.AdminKubeconfig
	if admin == "" {
		admin = layout.DefaultKubeconfig
	}
	c := &config{dataDir: dataDir, dir: layout.DataDir(dataDir), adminKubeconfig: admin, wantOwner: want, comps: map[string]*component{}}
	for _, name := range serverComponents {
		c.comps[name] = loadArgs(name, c.dir.ArgsFile(layout.PartServer, name))
	}
	for _, name := range []string{kubelet, kubeProxy} {
		c.comps[name] = loadArgs(name, c.dir.ArgsFile(layout.PartAgent, name))
	}

	// The kubelet is present with either its flags or its config file.
	k := c.comps[kubelet]
	c.kubeletArgsRecorded = k.present && k.err == nil
	c.kubeletFilePath = c.dir.Node().KubeletConfig()
	k.files = []string{c.kubeletFilePath, k.files[0]}
	data, err := os.ReadFile(c.kubeletFilePath)
	switch {
	case err == nil:
		k.present = true
		var doc map[string]any
		if err := yaml.Unmarshal(data, &doc); err != nil {
			k.err = errors.Join(k.err, fmt.Errorf("%s is not a KubeletConfiguration: %w", c.kubeletFilePath, err))
		} else {
			if doc == nil {
				doc = map[string]any{}
			}
			c.kubeletFile = doc
		}
	case !errors.Is(err, fs.ErrNotExist):
		k.present = true
		k.err = errors.Join(k.err, fmt.Errorf("reading %s: %w", c.kubeletFilePath, err))
	}
	if k.flags == nil {
		k.flags = map[string]string{}
	}

	for _, comp := range c.comps {
		if comp.present {
			return c, nil
		}
	}
	return nil, fmt.Errorf("no k1s configuration is recorded in %s (none of server/etc/args/*.json, agent/etc/args/*.json, agent/etc/kubelet.conf): "+
		"pass the --data-dir k1s runs with, and start k1s server or agent there once so that it records its configuration", dataDir)
}

// loadArgs reads a JSON array of "--key=value" arguments.
func loadArgs(name, path string) *component {
	comp := &component{name: name, files: []string{path}}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return comp
	}
	comp.present = true
	if err != nil {
		comp.err = fmt.Errorf("reading %s: %w", path, err)
		return comp
	}
	var argv []string
	if err := json.Unmarshal(data, &argv); err != nil {
		comp.err = fmt.Errorf("%s is not a JSON array of arguments: %w", path, err)
		return comp
	}
	comp.flags = parseFlags(argv)
	return comp
}

// parseFlags maps "--key=value" arguments to their values, the last one winning; a bare
// "--key" is true.
func parseFlags(argv []string) map[string]string {
	flags := make(map[string]string, len(argv))
	for _, arg := range argv {
		key, value, found := strings.Cut(strings.TrimLeft(arg, "-"), "=")
		if key == "" {
			continue
		}
		if !found {
			value = "true"
		}
		flags[key] = value
	}
	return flags
}

// flag is a component's recorded flag.
func (c *config) flag(comp, key string) (string, bool) {
	v, ok := c.comps[comp].flags[key]
	return v, ok
}

// rel shows paths under the data directory relative to it.
func (c *config) rel(paths ...string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		if r, err := filepath.Rel(c.dataDir, p); err == nil && !strings.HasPrefix(r, "..") {
			out[i] = r
		} else {
			out[i] = p
		}
	}
	return out
}

// readConfig parses a YAML or JSON configuration file named by a flag into v.
func readConfig(flag, path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--%s: %w", flag, err)
	}
	if err := yaml.Unmarshal(data, v); err != nil {
		return fmt.Errorf("--%s=%s: %w", flag, path, err)
	}
	return nil
}

// splitList splits a comma-separated flag value.
func splitList(v string) []string {
	var out []string
	for _, item := range strings.Split(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

func contains(list []string, item string) bool {
	for _, v := range list {
		if v == item {
			return true
		}
	}
	return false
}

// featureGates parses "Name=true,Other=false".
func featureGates(v string) map[string]string {
	gates := map[string]string{}
	for _, item := range splitList(v) {
		name, value, _ := strings.Cut(item, "=")
		gates[strings.TrimSpace(name)] = strings.TrimSpace(value)
	}
	return gates
}
