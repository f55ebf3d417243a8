package datadir

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/k1s-io/k1s/internal/layout"
)

// RecordArgs writes argv ("--key=value" each), the effective command line a k1s started an
// upstream component with, to the data directory's args file for it (layout's ArgsFile):
// `k1s check-config --cis` reads them. part is layout.PartServer or layout.PartAgent.
func RecordArgs(dataDir layout.DataDir, part, component string, argv []string) error {
	path := dataDir.ArgsFile(part, component)
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
