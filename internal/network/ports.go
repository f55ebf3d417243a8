package network

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"golang.org/x/sys/unix"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/util/validation"
)

// ListenPort is a port k1s is about to listen on, who listens there, and the flag that sets it.
type ListenPort struct {
	Host, Port, Owner, Flag string
}

// CheckPortsFree fails with the first port that something else already listens on.
func CheckPortsFree(ports []ListenPort) error {
	for _, p := range ports {
		l, err := net.Listen("tcp", net.JoinHostPort(p.Host, p.Port))
		if err != nil {
			if errors.Is(err, unix.EADDRINUSE) {
				return fmt.Errorf("port %s (%s) is already in use on %s; stop what listens there or set another port with %s", p.Port, p.Owner, p.Host, p.Flag)
			}
			return fmt.Errorf("cannot listen on %s for %s (%w); check %s", net.JoinHostPort(p.Host, p.Port), p.Owner, err, p.Flag)
		}
		l.Close()
	}
	return nil
}

// NodeName is name, or the host's name (lower case) when name is empty, checked.
func NodeName(name string) (string, error) {
	if name == "" {
		host, err := os.Hostname()
		if err != nil {
			return "", fmt.Errorf("cannot read the host name (%w); set --node-name", err)
		}
		name = strings.ToLower(host)
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return "", fmt.Errorf("node name %q is not valid (%s); set --node-name", name, errs[0])
	}
	return name, nil
}

// NodeIP is ip, or the address of the default route's interface when ip is nil.
func NodeIP(ip net.IP) (net.IP, error) {
	if ip != nil {
		return ip, nil
	}
	ip, err := utilnet.ChooseHostInterface()
	if err != nil {
		return nil, fmt.Errorf("cannot find this host's address (%w); set --node-ip", err)
	}
	return ip, nil
}
