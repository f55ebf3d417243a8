package killall

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/k1s-io/k1s/internal/layout"
)

// recognisedChain reports whether killall deletes the iptables chain: kube-proxy's, the CNI
// plugins', k1s's own and flannel's (FLANNEL-POSTRTG, FLANNEL-FWD).
func recognisedChain(name string) bool {
	for _, p := range layout.FirewallChainPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// nftTables are the nftables tables killall deletes (family, name).
var nftTables = [][2]string{{"ip", layout.KubeProxyNFTablesTable}, {"ip6", layout.KubeProxyNFTablesTable}, {"ip", layout.NFTablesTable},
	{"inet", layout.NetworkPolicyNFTablesTable}}

// removeFirewall deletes the recognised chains and the rules that jump to them, rule by rule
// (another program may change other rules meanwhile: no table is restored wholesale), for
// both IP families, then k1s's (the pod network's, the network-policy add-on's) and
// kube-proxy's nftables tables.
func removeFirewall(report func(string, ...any)) error {
	var errs []error
	for _, family := range []string{"iptables", "ip6tables"} {
		if _, err := exec.LookPath(family + "-save"); err != nil {
			continue
		}
		saved, err := exec.Command(family + "-save").Output()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s-save: %w", family, err))
			continue
		}
		plan, err := planFirewall(string(saved))
		if err != nil {
			errs = append(errs, fmt.Errorf("reading %s-save output: %w", family, err))
			continue
		}
		done := 0
		for _, args := range plan {
			// -w: wait for the xtables lock kube-proxy may still hold.
			if out, err := exec.Command(family, append([]string{"-w", "5"}, args...)...).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("%s %s: %w: %s", family, strings.Join(args, " "), err, strings.TrimSpace(string(out))))
				continue
			}
			done++
		}
		if done > 0 {
			report("removed the chains of kube-proxy, CNI, k1s and flannel from %s (%d commands)", family, done)
		}
	}
	if _, err := exec.LookPath("nft"); err == nil {
		out, err := exec.Command("nft", "list", "tables").Output()
		if err != nil {
			errs = append(errs, fmt.Errorf("nft list tables: %w", err))
		}
		for _, line := range strings.Split(string(out), "\n") {
			fields := strings.Fields(line)
			if len(fields) != 3 || fields[0] != "table" {
				continue
			}
			for _, t := range nftTables {
				if fields[1] != t[0] || fields[2] != t[1] {
					continue
				}
				if out, err := exec.Command("nft", "delete", "table", t[0], t[1]).CombinedOutput(); err != nil {
					errs = append(errs, fmt.Errorf("nft delete table %s %s: %w: %s", t[0], t[1], err, strings.TrimSpace(string(out))))
					continue
				}
				report("deleted nftables table %s %s", t[0], t[1])
			}
		}
	}
	return errors.Join(errs...)
}

// planFirewall turns iptables-save output into iptables arguments: first delete, from every
// other chain (the builtin ones, mostly), each rule that jumps or goes to a recognised chain;
// then, per table, flush every recognised chain and only then delete them, since they refer
// to one another.
func planFirewall(dump string) ([][]string, error) {
	type table struct {
		name   string
		chains []string
	}
	var plan [][]string
	var tables []*table
	var cur *table
	for n, line := range strings.Split(dump, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || line[0] == '#' || line == "COMMIT":
		case line[0] == '*':
			cur = &table{name: line[1:]}
			tables = append(tables, cur)
		case cur == nil:
			return nil, fmt.Errorf("line %d: %q comes before any table", n+1, line)
		case line[0] == ':':
			if name, _, _ := strings.Cut(line[1:], " "); recognisedChain(name) {
				cur.chains = append(cur.chains, name)
			}
		case strings.HasPrefix(line, "-A "):
			args, err := splitRule(line)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", n+1, err)
			}
			if len(args) < 3 {
				return nil, fmt.Errorf("line %d: %q is not a rule", n+1, line)
			}
			if chain, spec := args[1], args[2:]; !recognisedChain(chain) && recognisedChain(jumpTarget(spec)) {
				plan = append(plan, append([]string{"-t", cur.name, "-D", chain}, spec...))
			}
		default:
			return nil, fmt.Errorf("line %d: unexpected %q", n+1, line)
		}
	}
	for _, t := range tables {
		for _, c := range t.chains {
			plan = append(plan, []string{"-t", t.name, "-F", c})
		}
		for _, c := range t.chains {
			plan = append(plan, []string{"-t", t.name, "-X", c})
		}
	}
	return plan, nil
}

// jumpTarget is the chain a rule jumps or goes to. The last -j/-g counts: iptables-save prints
// the target after every match, so an earlier one can only be a match's value.
func jumpTarget(spec []string) string {
	target := ""
	for i := 0; i+1 < len(spec); i++ {
		switch spec[i] {
		case "-j", "--jump", "-g", "--goto":
			target = spec[i+1]
		}
	}
	return target
}

// splitRule splits an iptables-save line into arguments as iptables-restore does: blanks
// separate; double quotes group, and within them a backslash escapes the next character
// (iptables-save writes `--comment "a \"b\""`). Bytes are kept as they are.
func splitRule(line string) ([]string, error) {
	var args []string
	var arg []byte
	inArg, quoted, escaped := false, false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case escaped:
			arg = append(arg, c)
			escaped = false
		case quoted && c == '\\':
			escaped = true
		case c == '"':
			quoted = !quoted
			inArg = true // "" is an (empty) argument
		case !quoted && (c == ' ' || c == '\t'):
			if inArg {
				args = append(args, string(arg))
				arg, inArg = arg[:0], false
			}
		default:
			arg = append(arg, c)
			inArg = true
		}
	}
	if quoted {
		return nil, fmt.Errorf("unterminated quote in %q", line)
	}
	if inArg {
		args = append(args, string(arg))
	}
	return args, nil
}
