package cis

import (
	"fmt"
	"strconv"
	"strings"
)

// kubeletSettings are the kubelet settings the checks read: each flag, the KubeletConfiguration
// field it overrides, and the field's default when neither sets it. The defaults are those of
// a kubelet given a config file (kubelet.config.k8s.io/v1beta1), as k1s always gives one;
// some differ from the defaults of the flags alone (anonymous auth, read-only port,
// authorization mode).
var kubeletSettings = map[string]struct{ path, def string }{
	"anonymous-auth":                    {"authentication.anonymous.enabled", "false"},
	"authorization-mode":                {"authorization.mode", "Webhook"},
	"client-ca-file":                    {"authentication.x509.clientCAFile", ""},
	"read-only-port":                    {"readOnlyPort", "0"},
	"streaming-connection-idle-timeout": {"streamingConnectionIdleTimeout", "4h0m0s"},
	"make-iptables-util-chains":         {"makeIPTablesUtilChains", "true"},
	"event-qps":                         {"eventRecordQPS", "50"},
	"tls-cert-file":                     {"tlsCertFile", ""},
	"tls-private-key-file":              {"tlsPrivateKeyFile", ""},
	"rotate-certificates":               {"rotateCertificates", "false"},
	"rotate-server-certificates":        {"serverTLSBootstrap", "false"},
	"tls-cipher-suites":                 {"tlsCipherSuites", ""},
	"pod-max-pids":                      {"podPidsLimit", "-1"},
	"seccomp-default":                   {"seccompDefault", "false"},
	"protect-kernel-defaults":           {"protectKernelDefaults", "false"},
}

// kubeletSetting is the kubelet's effective value of the setting a flag controls: the
// recorded flag, else the config file's field, else the default. shown says which, for a
// finding; set is false for the default.
func (c *config) kubeletSetting(flag string) (value, shown string, set bool) {
	s, ok := kubeletSettings[flag]
	if !ok {
		panic("cis: unknown kubelet setting " + flag)
	}
	if v, ok := c.comps[kubelet].flags[flag]; ok {
		return v, fmt.Sprintf("--%s=%s (kubelet argument)", flag, v), true
	}
	if v, ok := lookup(c.kubeletFile, s.path); ok {
		str := scalar(v)
		return str, fmt.Sprintf("%s: %s (%s)", s.path, str, c.rel(c.kubeletFilePath)[0]), true
	}
	if s.def == "" {
		return "", s.path + " not set", false
	}
	return s.def, fmt.Sprintf("%s not set (default %s)", s.path, s.def), false
}

// kubeletReads wraps a kubelet check that reads settings: it is UNVERIFIED when
// kubeletUnseen says the recorded configuration cannot tell their values.
func kubeletReads(flags []string, eval func(*config) outcome) func(*config) outcome {
	return func(c *config) outcome {
		if why := c.kubeletUnseen(flags...); why != "" {
			return unverified("%s", why)
		}
		return eval(c)
	}
}

// kubeletUnseen says why the kubelet's effective value of the settings flags control cannot
// be told ("" when it can). A recorded flag wins over the config file; a setting no flag
// records needs both the recorded command line (no flag overrides it) and the config file
// (its field, or the default a kubelet given a config file has). Without the file the
// kubelet's flag defaults would differ (anonymous auth, read-only port 10255), so falling
// back to the file's defaults would pass what the report cannot see.
func (c *config) kubeletUnseen(flags ...string) string {
	missing := c.kubeletMissing()
	if missing == "" {
		return ""
	}
	for _, flag := range flags {
		if _, ok := c.comps[kubelet].flags[flag]; !ok {
			return fmt.Sprintf("cannot tell the kubelet's %s: %s not found", kubeletSettings[flag].path, missing)
		}
	}
	return ""
}

// kubeletMissing names the kubelet's records that are missing: its command line, its config
// file ("" when both are there).
func (c *config) kubeletMissing() string {
	var missing []string
	if !c.kubeletArgsRecorded {
		missing = append(missing, c.comps[kubelet].files[1])
	}
	if c.kubeletFile == nil {
		missing = append(missing, c.kubeletFilePath)
	}
	return strings.Join(c.rel(missing...), " and ")
}

// kubeletFeatureGate is the kubelet's value of a feature gate ("" when neither its flags nor
// its file set it): flags override the file gate by gate. unseen says why it cannot be told
// (see kubeletUnseen).
func (c *config) kubeletFeatureGate(name string) (value, shown, unseen string) {
	if v, ok := c.comps[kubelet].flags["feature-gates"]; ok {
		if g, ok := featureGates(v)[name]; ok {
			return g, fmt.Sprintf("--feature-gates=%s (kubelet argument)", v), ""
		}
	}
	if missing := c.kubeletMissing(); missing != "" {
		return "", "", fmt.Sprintf("cannot tell the kubelet's feature gate %s: %s not found", name, missing)
	}
	if gates, ok := lookup(c.kubeletFile, "featureGates"); ok {
		if m, ok := gates.(map[string]any); ok {
			if g, ok := m[name]; ok {
				return scalar(g), fmt.Sprintf("featureGates.%s: %s (%s)", name, scalar(g), c.rel(c.kubeletFilePath)[0]), ""
			}
		}
	}
	return "", fmt.Sprintf("feature gate %s not set (default true)", name), ""
}

// lookup follows a dotted path through a parsed YAML document.
func lookup(doc map[string]any, path string) (any, bool) {
	var cur any = doc
	for _, key := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[key]; !ok {
			return nil, false
		}
	}
	return cur, cur != nil
}

// scalar shows a parsed YAML value as a flag would spell it; lists are comma-separated.
func scalar(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case bool:
		return strconv.FormatBool(v)
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case []any:
		items := make([]string, len(v))
		for i, item := range v {
			items[i] = scalar(item)
		}
		return strings.Join(items, ",")
	default:
		return fmt.Sprint(v)
	}
}
