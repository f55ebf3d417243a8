// Package args builds upstream components' command lines from k1s's defaults and the user's
// pass-through arguments (--kube-apiserver-arg and friends), with k3s's semantics.
package args

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Merge returns "--key=value" arguments: every default, except those whose key the user set,
// with k3s's semantics for the user's arguments:
//   - "key=value" replaces the default (a key given more than once keeps every value, in
//     order, for repeatable upstream flags);
//   - "key+=value" appends value to the default's comma-separated list (so
//     enable-admission-plugins+=X keeps k1s's plugins);
//   - "key-=value" removes value from it.
//
// A user argument may be written with or without leading dashes; a bare "key" is a boolean
// true. The result is sorted by key so that a component's command line is stable.
func Merge(defaults map[string]string, user []string) ([]string, error) {
	values := make(map[string][]string, len(defaults)+len(user))
	for k, v := range defaults {
		values[k] = []string{v}
	}
	replaced := map[string]bool{}
	for _, arg := range user {
		key, op, value, err := split(arg)
		if err != nil {
			return nil, err
		}
		switch op {
		case "+=", "-=":
			list := listOf(values[key])
			if op == "+=" {
				list = append(list, value)
			} else {
				list = slices.DeleteFunc(list, func(v string) bool { return v == value })
			}
			values[key] = []string{strings.Join(list, ",")}
		default:
			if !replaced[key] {
				replaced[key] = true
				values[key] = nil
			}
			values[key] = append(values[key], value)
		}
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

// listOf is the comma-separated list the values of a key hold.
func listOf(values []string) []string {
	var list []string
	for _, v := range values {
		for _, item := range strings.Split(v, ",") {
			if item != "" {
				list = append(list, item)
			}
		}
	}
	return list
}

// Split parses one pass-through argument into its key and value ("key+=v" and "key-=v" are
// reported with their operator kept in the key's place: use Merge for them).
func Split(arg string) (key, value string, err error) {
	key, _, value, err = split(arg)
	return key, value, err
}

func split(arg string) (key, op, value string, err error) {
	trimmed := strings.TrimLeft(arg, "-")
	key, value, found := strings.Cut(trimmed, "=")
	op = "="
	if !found {
		value = "true"
	} else if k, ok := strings.CutSuffix(key, "+"); ok {
		key, op = k, "+="
	} else if k, ok := strings.CutSuffix(key, "-"); ok {
		key, op = k, "-="
	}
	if key == "" || strings.ContainsAny(key, " \t") {
		return "", "", "", fmt.Errorf("malformed argument %q: expected key=value, key+=value or key-=value", arg)
	}
	return key, op, value, nil
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

// Effective returns each key of defaults with the value it has once the user's arguments are
// merged in (its last value; a key the user emptied is left out): what a component started
// with them uses, for another component that must agree with it.
func Effective(defaults map[string]string, user []string) (map[string]string, error) {
	merged, err := Merge(defaults, user)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(defaults))
	for key := range defaults {
		if v, ok := Value(merged, key); ok {
			out[key] = v
		}
	}
	return out, nil
}
