package spec

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/strvals"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// ValuesFile is one layer of values, named for errors.
type ValuesFile struct {
	Name, Content string
}

// Layers are a chart's values files from lowest to highest precedence, as k3s orders them:
// the HelmChart's valuesContent, then its valuesSecrets, then the HelmChartConfig's
// valuesContent and valuesSecrets. secret reads a Secret's keys (all of them, sorted, when
// keys is empty).
func Layers(chart *HelmChart, config *HelmChartConfig, secret func(SecretSpec) ([]ValuesFile, error)) ([]ValuesFile, error) {
	var out []ValuesFile
	add := func(owner, content string, secrets []SecretSpec) error {
		if content != "" {
			out = append(out, ValuesFile{Name: owner + " valuesContent", Content: content})
		}
		for _, s := range secrets {
			files, err := secret(s)
			if err != nil {
				return fmt.Errorf("%s valuesSecrets: %w", owner, err)
			}
			out = append(out, files...)
		}
		return nil
	}
	if err := add("HelmChart", chart.Spec.ValuesContent, chart.Spec.ValuesSecrets); err != nil {
		return nil, err
	}
	if config != nil {
		if err := add("HelmChartConfig", config.Spec.ValuesContent, config.Spec.ValuesSecrets); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// MergeValues merges the layers, each over the ones before, and then set, which takes
// precedence over all: helm install -f LAYER… --set KEY=VALUE…. A value of set that is a
// number or true/false is typed; any other string stays a string (--set-string), as k3s does.
func MergeValues(files []ValuesFile, set map[string]intstr.IntOrString) (map[string]any, error) {
	values := map[string]any{}
	for _, f := range files {
		v, err := common.ReadValues([]byte(f.Content))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Name, err)
		}
		values = util.MergeTables(v.AsMap(), values)
	}
	for _, key := range slices.Sorted(maps.Keys(set)) {
		v := set[key]
		var err error
		switch {
		case v.Type == intstr.Int:
			err = strvals.ParseInto(key+"="+strconv.Itoa(int(v.IntVal)), values)
		case v.StrVal == "true" || v.StrVal == "false":
			err = strvals.ParseInto(key+"="+v.StrVal, values)
		default:
			err = strvals.ParseIntoString(key+"="+v.StrVal, values)
		}
		if err != nil {
			return nil, fmt.Errorf("set %s: %w", key, err)
		}
	}
	return values, nil
}

// Digest identifies what an install or upgrade was made of: the chart spec, its HelmChart
// config's and the values read from Secrets. A release whose digest matches is up to date.
func Digest(chart *HelmChart, config *HelmChartConfig, files []ValuesFile) string {
	h := sha256.New()
	enc := json.NewEncoder(h)
	_ = enc.Encode(chart.Spec)
	if config != nil {
		_ = enc.Encode(config.Spec)
	}
	for _, f := range files {
		_ = enc.Encode([]string{f.Name, f.Content})
	}
	return hex.EncodeToString(h.Sum(nil))
}
