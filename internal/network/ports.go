package network

import (
	"errors"
	"fmt"
	"net"

	"golang.org/x/sys/unix"
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
