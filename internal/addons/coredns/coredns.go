// Package coredns is the cluster DNS add-on: CoreDNS from the payload, forwarding to the
// node's upstream resolvers.
package coredns

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strings"
)

// Values fills the add-on manifest's placeholders. forwardless reports that resolvConf names
// no resolver CoreDNS can forward to, so that the caller can say what that means.
func Values(clusterDNS net.IP, clusterDomain, resolvConf, image string) (values map[string]string, forwardless bool, err error) {
	forward, err := forwardDirective(resolvConf)
	if err != nil {
		return nil, false, err
	}
	return map[string]string{
		"CLUSTER_DNS":    clusterDNS.String(),
		"CLUSTER_DOMAIN": clusterDomain,
		"COREDNS_IMAGE":  image,
		"FORWARD":        forward,
	}, forward == "", nil
}

// forwardDirective is CoreDNS's forward line for the resolvers in resolvConf. Loopback
// resolvers are left out: inside the CoreDNS pod they are CoreDNS itself.
func forwardDirective(resolvConf string) (string, error) {
	if resolvConf == "" {
		return "", nil
	}
	f, err := os.Open(resolvConf)
	if err != nil {
		return "", fmt.Errorf("--resolv-conf: %w", err)
	}
	defer f.Close()
	var upstream []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "nameserver" {
			if ip := net.ParseIP(fields[1]); ip != nil && !ip.IsLoopback() {
				upstream = append(upstream, ip.String())
			}
		}
	}
	if len(upstream) == 0 {
		return "", sc.Err()
	}
	return "forward . " + strings.Join(upstream, " "), sc.Err()
}
