package host

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRestoreHostSysctlsAllowlist(t *testing.T) {
	dataDir, procSys := t.TempDir(), t.TempDir()
	for _, dir := range []string{"kernel", "vm"} {
		if err := os.MkdirAll(filepath.Join(procSys, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	record := `{"kernel/panic": "-1", "vm/overcommit_memory": "0", "../../escape": "1", "kernel/hostname": "1", "kernel/panic_on_oops": "1; rm"}`
	if err := os.MkdirAll(filepath.Dir(SysctlRecordFile(dataDir)), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(SysctlRecordFile(dataDir), []byte(record), 0o600); err != nil {
		t.Fatal(err)
	}
	restored, err := restoreHostSysctls(dataDir, procSys)
	if err == nil {
		t.Fatal("a record with foreign keys was accepted")
	}
	for _, want := range []string{`"../../escape"`, `"kernel/hostname"`, `kernel.panic_on_oops="1; rm"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if got := strings.Join(restored, " "); got != "kernel.panic=-1 vm.overcommit_memory=0" {
		t.Errorf("restored %q", got)
	}
	for file, want := range map[string]string{"kernel/panic": "-1", "vm/overcommit_memory": "0"} {
		if data, _ := os.ReadFile(filepath.Join(procSys, file)); string(data) != want {
			t.Errorf("%s = %q, want %q", file, data, want)
		}
	}
	for _, file := range []string{"kernel/hostname", "kernel/panic_on_oops", "../escape", "../../escape"} {
		if _, err := os.Stat(filepath.Join(procSys, file)); err == nil {
			t.Errorf("%s was written", file)
		}
	}
	if _, err := os.Stat(SysctlRecordFile(dataDir)); err != nil {
		t.Error("the record was removed although entries were refused")
	}
}

func TestRecordAndRestoreHostSysctls(t *testing.T) {
	dataDir, procSys := t.TempDir(), t.TempDir()
	if err := os.MkdirAll(filepath.Join(procSys, "net", "ipv4"), 0o755); err != nil {
		t.Fatal(err)
	}
	forward := filepath.Join(procSys, "net", "ipv4", "ip_forward")
	if err := os.WriteFile(forward, []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := recordHostSysctlsFrom(dataDir, procSys); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(forward, []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	restored, err := restoreHostSysctls(dataDir, procSys)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(restored, " "); got != "net.ipv4.ip_forward=0" {
		t.Errorf("restored %q", got)
	}
	if data, _ := os.ReadFile(forward); string(data) != "0" {
		t.Errorf("ip_forward = %q", data)
	}
	if _, err := os.Stat(SysctlRecordFile(dataDir)); err == nil {
		t.Error("the record was kept after a full restore")
	}
}

func TestCheckSysctlValues(t *testing.T) {
	for value, ok := range map[string]bool{"0": true, "10": true, "-1": true, "": false, "-": false, "1 2": false, "0x1": false, "99999999999999999999": false, "1\n": false} {
		if err := checkSysctl("kernel/panic", value); (err == nil) != ok {
			t.Errorf("checkSysctl(kernel/panic, %q) = %v", value, err)
		}
	}
}
