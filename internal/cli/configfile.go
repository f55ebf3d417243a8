package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strconv"

	"github.com/urfave/cli/v2"
	"sigs.k8s.io/yaml"
)

// DefaultConfigFile is read when --config is not given; it may be absent.
const DefaultConfigFile = "/etc/k1s/config.yaml"

// configFlag is the --config flag every long-running command has.
func configFlag() cli.Flag {
	return &cli.StringFlag{
		Name:    "config",
		Aliases: []string{"c"},
		Usage:   "YAML file whose keys are long flag names (lists for repeatable flags); flags on the command line win",
		Value:   DefaultConfigFile,
		EnvVars: []string{"K1S_CONFIG_FILE"},
	}
}

// applyConfigFile sets every flag that the command line and environment left unset from the
// config file. It is a command's Before hook.
func applyConfigFile(c *cli.Context) error {
	path := c.String("config")
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && !c.IsSet("config") {
			return nil
		}
		return fmt.Errorf("cannot read config file %s: %w", path, errors.Unwrap(err))
	}
	values, err := parseConfigFile(data)
	if err != nil {
		return fmt.Errorf("config file %s is malformed: %w", path, err)
	}
	flags := map[string]cli.Flag{}
	for _, f := range c.Command.Flags {
		for _, name := range f.Names() {
			flags[name] = f
		}
	}
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		f, ok := flags[key]
		if !ok || key == "config" {
			return fmt.Errorf("config file %s: unknown key %q; keys are the long flags of 'k1s %s' (see --help)", path, key, c.Command.Name)
		}
		if c.IsSet(key) {
			continue
		}
		list := values[key]
		if _, repeatable := f.(*cli.StringSliceFlag); !repeatable && len(list) != 1 {
			return fmt.Errorf("config file %s: key %q takes one value, not a list", path, key)
		}
		for _, v := range list {
			if err := c.Set(f.Names()[0], v); err != nil {
				return fmt.Errorf("config file %s: key %q: %w", path, key, err)
			}
		}
	}
	return nil
}

// parseConfigFile reads a flat YAML mapping into flag values: scalars become one value, lists
// one value per item.
func parseConfigFile(data []byte) (map[string][]string, error) {
	var raw map[string]any
	if err := yaml.UnmarshalStrict(data, &raw); err != nil {
		return nil, err
	}
	out := make(map[string][]string, len(raw))
	for key, value := range raw {
		if list, ok := value.([]any); ok {
			for _, item := range list {
				s, err := scalar(key, item)
				if err != nil {
					return nil, err
				}
				out[key] = append(out[key], s)
			}
			continue
		}
		s, err := scalar(key, value)
		if err != nil {
			return nil, err
		}
		out[key] = []string{s}
	}
	return out, nil
}

func scalar(key string, v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case bool:
		return strconv.FormatBool(v), nil
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	case nil:
		return "", fmt.Errorf("key %q has no value", key)
	default:
		return "", fmt.Errorf("key %q: expected a string, number, boolean or a list of them, not a mapping", key)
	}
}
