// Package args builds upstream components' command lines from k1s's defaults and the user's
// pass-through arguments (--kube-apiserver-arg and friends), with k3s's semantics.
package args

import (
	"fmt"
	"sort"
	"strings"
)

// Merge returns "--key=value" arguments: every default, except those whose key the user set,
// which take the user's value instead. A user key given more than once keeps every value, in
// order (for repeatable upstream flags). A user argument may be written "key=value",
// "--key=value" or "key" (for a boolean true). The result is sorted by key so that a
// component's command line is stable.
func Merge(defaults map[string]string, user []string) ([]string, error) {
	values := make(map[string][]string, len(defaults)+len(user))
	for k, v := range defaults {
		values[k] = []string{v}
	}
	fromUser := map[string]bool{}
	for _, arg := range user {
		key, value, err := Split(arg)
		if err != nil {
			return nil, err
		}
		if !fromUser[key] {
			fromUser[key] = true
			values[key] = nil
		}
		values[key] = append(values[key], value)
	}
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []string
	for _, k := range keys {
		for _, v := range values[k] {
			out = append(out, "--"+k+"="+v)
		}
	}
	return out, nil
}

// Split parses one pass-through argument into its key and value.
func Split(arg string) (key, value string, err error) {
	trimmed := strings.TrimLeft(arg, "-")
	key, value, found := strings.Cut(trimmed, "=")
	if !found {
		value = "true"
	}
	if key == "" || strings.ContainsAny(key, " \t") {
		return "", "", fmt.Errorf("malformed argument %q: expected key=value", arg)
	}
	return key, value, nil
}

// Value returns the last value a merged argument list gives key, and whether it has one.
func Value(merged []string, key string) (string, bool) {
	value, found := "", false
	for _, arg := range merged {
		if v, ok := strings.CutPrefix(arg, "--"+key+"="); ok {
			value, found = v, true
		}
	}
	return value, found
}
