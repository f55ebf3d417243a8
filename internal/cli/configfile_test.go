package cli

import (
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// runWithConfig runs a command with the server's config-file handling and returns the values
// the action saw.
func runWithConfig(t *testing.T, file string, argv ...string) (map[string]any, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	var seen map[string]any
	app := &cli.App{
		Name:      "k1s",
		Writer:    io.Discard,
		ErrWriter: io.Discard,
		Commands: []*cli.Command{{
			Name:   "server",
			Before: applyConfigFile,
			Flags: []cli.Flag{
				configFlag(),
				&cli.StringFlag{Name: "data-dir", Aliases: []string{"d"}, Value: "/var/lib/k1s"},
				&cli.IntFlag{Name: "https-listen-port", Value: 6443},
				&cli.BoolFlag{Name: "disable-agent"},
				&cli.StringSliceFlag{Name: "tls-san"},
				componentArgFlag("etcd-arg", ""),
			},
			Action: func(c *cli.Context) error {
				seen = map[string]any{
					"data-dir":          c.String("data-dir"),
					"https-listen-port": c.Int("https-listen-port"),
					"disable-agent":     c.Bool("disable-agent"),
					"tls-san":           c.StringSlice("tls-san"),
					"etcd-arg":          componentArgs(c, "etcd-arg"),
				}
				return nil
			},
		}},
	}
	err := app.Run(append([]string{"k1s", "server", "--config", path}, argv...))
	return seen, err
}

func TestConfigFileSetsFlags(t *testing.T) {
	got, err := runWithConfig(t, "data-dir: /srv/k1s\nhttps-listen-port: 7443\ndisable-agent: true\ntls-san:\n  - a.example\n  - 10.0.0.1\n")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"data-dir": "/srv/k1s", "https-listen-port": 7443, "disable-agent": true, "tls-san": []string{"a.example", "10.0.0.1"}, "etcd-arg": []string(nil)}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
}

// YAML 1.1 reads 0640 as an octal number; a file mode must keep its text.
func TestOctalLookingValuesKeepTheirText(t *testing.T) {
	values, err := parseConfigFile([]byte("write-kubeconfig-mode: 0640\nhttps-listen-port: 6443\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := values["write-kubeconfig-mode"]; len(got) != 1 || got[0] != "0640" {
		t.Fatalf("write-kubeconfig-mode = %q, want 0640", got)
	}
}

func TestCommandLineWinsOverConfigFile(t *testing.T) {
	got, err := runWithConfig(t, "data-dir: /srv/k1s\ntls-san: [a.example]\nhttps-listen-port: 7443\n",
		"--data-dir", "/other", "--tls-san", "b.example")
	if err != nil {
		t.Fatal(err)
	}
	if got["data-dir"] != "/other" || !reflect.DeepEqual(got["tls-san"], []string{"b.example"}) || got["https-listen-port"] != 7443 {
		t.Fatalf("got %v", got)
	}
}

func TestScalarForListFlag(t *testing.T) {
	got, err := runWithConfig(t, "tls-san: a.example\n")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got["tls-san"], []string{"a.example"}) {
		t.Fatalf("a scalar for a list flag: got %v", got["tls-san"])
	}
}

func TestConfigFileErrors(t *testing.T) {
	for _, tc := range []struct{ file, want string }{
		{"data-dri: /x\n", `unknown key "data-dri"`},
		{"data-dir: [/a, /b]\n", `takes one value`},
		{"data-dir: /x\n  bad: indent\n", "malformed"},
		{"data-dir: /x\ndata-dir: /y\n", "appears twice"},
		{"data-dir:\n", "no value"},
		{"- just\n- a list\n", "malformed"},
		{"tls-san:\n  nested: map\n", "not a mapping"},
		{"https-listen-port: many\n", `https-listen-port`},
	} {
		_, err := runWithConfig(t, tc.file)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("config %q: error %v, want one containing %q", tc.file, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("config %q: error is not one line: %q", tc.file, err)
		}
	}
}

func TestMissingDefaultConfigFileIsFine(t *testing.T) {
	app := &cli.App{Name: "k1s", Commands: []*cli.Command{{
		Name: "server", Before: applyConfigFile,
		Flags:  []cli.Flag{&cli.StringFlag{Name: "config", Value: filepath.Join(t.TempDir(), "absent.yaml")}},
		Action: func(*cli.Context) error { return nil },
	}}}
	if err := app.Run([]string{"k1s", "server"}); err != nil {
		t.Fatal(err)
	}
	if err := app.Run([]string{"k1s", "server", "--config", filepath.Join(t.TempDir(), "absent.yaml")}); err == nil {
		t.Fatal("an explicitly named config file that does not exist was accepted")
	}
}

// A component's own list value keeps its commas, on the command line and in the file.
func TestComponentArgsKeepCommas(t *testing.T) {
	got, err := runWithConfig(t, "etcd-arg:\n  - log-level=warn,x\n", "--etcd-arg", "listen-client-urls=https://127.0.0.1:2379,https://10.0.0.1:2379", "--etcd-arg", "name=a")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"listen-client-urls=https://127.0.0.1:2379,https://10.0.0.1:2379", "name=a"}; !reflect.DeepEqual(got["etcd-arg"], want) {
		t.Fatalf("command line: %q, want %q", got["etcd-arg"], want)
	}
	got, err = runWithConfig(t, "etcd-arg:\n  - initial-cluster=a=https://1.2.3.4:2380,b=https://1.2.3.5:2380\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"initial-cluster=a=https://1.2.3.4:2380,b=https://1.2.3.5:2380"}; !reflect.DeepEqual(got["etcd-arg"], want) {
		t.Fatalf("config file: %q, want %q", got["etcd-arg"], want)
	}
}
