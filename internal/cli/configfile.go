package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"

	"github.com/urfave/cli/v2"
	"go.yaml.in/yaml/v3"

	"github.com/k1s-io/k1s/internal/layout"
)

// configFlag is the --config flag every long-running command has.
func configFlag() cli.Flag {
	return &cli.StringFlag{
		Name:    "config",
		Aliases: []string{"c"},
		Usage:   "YAML file whose keys are long flag names (lists for repeatable flags); flags on the command line win",
		Value:   layout.DefaultConfigFile,
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
		if !repeatable(f) && len(list) != 1 {
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
// one value per item. Scalars keep the text as written: a YAML 1.1 decoder would turn
// `write-kubeconfig-mode: 0640` into the number 416.
func parseConfigFile(data []byte) (map[string][]string, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	out := map[string][]string{}
	if doc.Kind == 0 {
		return out, nil // empty file
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: expected key: value pairs", root.Line)
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		key, value := root.Content[i].Value, root.Content[i+1]
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("line %d: key %q appears twice", root.Content[i].Line, key)
		}
		switch value.Kind {
		case yaml.ScalarNode:
			if value.Tag == "!!null" {
				return nil, fmt.Errorf("line %d: key %q has no value", value.Line, key)
			}
			out[key] = []string{value.Value}
		case yaml.SequenceNode:
			items := []string{}
			for _, item := range value.Content {
				if item.Kind != yaml.ScalarNode {
					return nil, fmt.Errorf("line %d: key %q: list items must be plain values", item.Line, key)
				}
				items = append(items, item.Value)
			}
			out[key] = items
		default:
			return nil, fmt.Errorf("line %d: key %q: expected a string, number, boolean or a list of them, not a mapping", value.Line, key)
		}
	}
	return out, nil
}
