package agent

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/k1s-io/k1s/internal/pki"
)

// HostSysctls are the kernel settings a node changes: the kubelet sets the first three (with
// protectKernelDefaults off, field notes §7), the pod network the others.
var HostSysctls = []string{
	"kernel/panic",
	"kernel/panic_on_oops",
	"vm/overcommit_memory",
	"net/ipv4/ip_forward",
	"net/bridge/bridge-nf-call-iptables",
	"net/bridge/bridge-nf-call-ip6tables",
}

// SysctlRecordFile is where a node records the host's settings before it first changes them;
// `k1s killall` puts them back.
func SysctlRecordFile(dataDir string) string {
	return filepath.Join(dataDir, "agent", "host-sysctls.json")
}

// recordHostSysctls writes the current values, unless an earlier start already recorded the
// values the host had before any k1s.
func recordHostSysctls(dataDir string) error {
	path := SysctlRecordFile(dataDir)
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	values := map[string]string{}
	for _, key := range HostSysctls {
		if v, err := os.ReadFile(filepath.Join("/proc/sys", key)); err == nil {
			values[key] = strings.TrimSpace(string(v))
		}
	}
	data, err := json.MarshalIndent(values, "", "  ")
	if err != nil {
		return err
	}
	return pki.WriteFileAtomic(path, data, 0o600)
}

// RestoreHostSysctls puts back what recordHostSysctls recorded, and forgets it. It returns the
// keys it restored.
func RestoreHostSysctls(dataDir string) ([]string, error) {
	path := SysctlRecordFile(dataDir)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	values := map[string]string{}
	if err := json.Unmarshal(data, &values); err != nil {
		return nil, err
	}
	var restored []string
	var errs []error
	for key, value := range values {
		if err := os.WriteFile(filepath.Join("/proc/sys", key), []byte(value), 0o644); err != nil {
			errs = append(errs, err)
			continue
		}
		restored = append(restored, strings.ReplaceAll(key, "/", ".")+"="+value)
	}
	if len(errs) == 0 {
		os.Remove(path)
	}
	return restored, errors.Join(errs...)
}
