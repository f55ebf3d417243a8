package host

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/k1s-io/k1s/internal/fileutil"
	"github.com/k1s-io/k1s/internal/layout"
)

// Sysctls are the kernel settings a node changes: the kubelet's tunables (which the kubelet
// sets itself with protectKernelDefaults off, field notes §7, and k1s sets for it when
// hardened), and the pod network's.
var Sysctls = []string{
	"kernel/panic",
	"kernel/panic_on_oops",
	"vm/overcommit_memory",
	"vm/panic_on_oom",
	"kernel/keys/root_maxkeys",
	"kernel/keys/root_maxbytes",
	"net/ipv4/ip_forward",
	"net/bridge/bridge-nf-call-iptables",
	"net/bridge/bridge-nf-call-ip6tables",
}

// kubeletTunables are the values the kubelet requires (its setupKernelTunables): with
// protectKernelDefaults it refuses to start unless the host has them.
var kubeletTunables = map[string]string{
	"vm/overcommit_memory":      "1",
	"vm/panic_on_oom":           "0",
	"kernel/panic":              "10",
	"kernel/panic_on_oops":      "1",
	"kernel/keys/root_maxkeys":  "1000000",
	"kernel/keys/root_maxbytes": "25000000",
}

// SetKubeletTunables sets the kernel parameters the kubelet needs, for a kubelet that must
// not change them itself (--hardened). Call RecordSysctls first.
func SetKubeletTunables() error {
	keys := make([]string, 0, len(kubeletTunables))
	for key := range kubeletTunables {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	for _, key := range keys {
		if err := os.WriteFile(filepath.Join("/proc/sys", key), []byte(kubeletTunables[key]), 0o644); err != nil {
			return fmt.Errorf("setting %s=%s for the kubelet (protect-kernel-defaults): %w", sysctlName(key), kubeletTunables[key], err)
		}
	}
	return nil
}

// SysctlRecordFile is where a node records the host's settings before it first changes them;
// `k1s killall` puts them back.
func SysctlRecordFile(dataDir string) string { return layout.DataDir(dataDir).Node().SysctlRecord() }

// RecordSysctls writes the current values of Sysctls, except those an earlier start already
// recorded (the values the host had before any k1s).
func RecordSysctls(dataDir string) error {
	return recordHostSysctlsFrom(dataDir, "/proc/sys")
}

func recordHostSysctlsFrom(dataDir, procSys string) error {
	path := SysctlRecordFile(dataDir)
	values := map[string]string{}
	if data, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(data, &values); err != nil {
			return fmt.Errorf("%s is malformed (%w): restore the host's sysctls by hand and remove it", path, err)
		}
	}
	// Keys an earlier start recorded keep the host's value from before any k1s; keys it did
	// not know yet are recorded now, before this start changes them.
	added := false
	for _, key := range Sysctls {
		if _, ok := values[key]; ok {
			continue
		}
		if v, err := os.ReadFile(filepath.Join(procSys, key)); err == nil {
			values[key] = strings.TrimSpace(string(v))
			added = true
		}
	}
	if !added {
		return nil
	}
	data, err := json.MarshalIndent(values, "", "  ")
	if err != nil {
		return err
	}
	return fileutil.WriteAtomic(path, data, 0o600)
}

// RestoreSysctls puts back what RecordSysctls recorded, and forgets it. It returns the
// settings it restored.
func RestoreSysctls(dataDir string) ([]string, error) {
	return restoreHostSysctls(dataDir, "/proc/sys")
}

// restoreHostSysctls writes under procSys only the keys of Sysctls, with numeric values: the
// record is a file on disk, and killall runs as root.
func restoreHostSysctls(dataDir, procSys string) ([]string, error) {
	path := SysctlRecordFile(dataDir)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the recorded host sysctls: %w", err)
	}
	values := map[string]string{}
	if err := json.Unmarshal(data, &values); err != nil {
		return nil, fmt.Errorf("%s is malformed (%w): restore the host's sysctls by hand and remove it", path, err)
	}
	keys := make([]string, 0, len(values))
	for key := range values {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	var restored []string
	var errs []error
	for _, key := range keys {
		value := values[key]
		if err := checkSysctl(key, value); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", path, err))
			continue
		}
		if err := os.WriteFile(filepath.Join(procSys, key), []byte(value), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("restoring %s=%s: %w", sysctlName(key), value, err))
			continue
		}
		restored = append(restored, sysctlName(key)+"="+value)
	}
	if len(errs) == 0 {
		os.Remove(path)
	}
	return restored, errors.Join(errs...)
}

// checkSysctl refuses a key k1s does not change (a "../" key would write anywhere) and any value
// that is not a short integer, as all of Sysctls are.
func checkSysctl(key, value string) error {
	if !slices.Contains(Sysctls, key) {
		return fmt.Errorf("refusing to restore %q: k1s changes only %s; remove that entry and rerun killall", key, strings.Join(Sysctls, ", "))
	}
	digits := strings.TrimPrefix(value, "-") // kernel.panic may be negative
	if digits == "" || len(digits) > 19 || strings.Trim(digits, "0123456789") != "" {
		return fmt.Errorf("refusing to restore %s=%q: not an integer; fix that entry and rerun killall", sysctlName(key), value)
	}
	return nil
}

func sysctlName(key string) string { return strings.ReplaceAll(key, "/", ".") }
