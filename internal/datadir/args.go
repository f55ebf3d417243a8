package datadir

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// ArgsFile is where a k1s records the effective command line it started an upstream
// component with: part is "server" or "agent", component the upstream name (kube-apiserver,
// kubelet, …). `k1s check-config --cis` reads them.
func ArgsFile(dataDir, part, component string) string {
	return filepath.Join(dataDir, part, "etc", "args", component+".json")
}

// RecordArgs writes argv ("--key=value" each) to ArgsFile.
func RecordArgs(dataDir, part, component string, argv []string) error {
	path := ArgsFile(dataDir, part, component)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("recording %s's arguments: %w", component, err)
	}
	data, err := json.MarshalIndent(argv, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("recording %s's arguments: %w", component, err)
	}
	return nil
}
