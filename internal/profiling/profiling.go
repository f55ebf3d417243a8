// Package profiling serves Go's pprof endpoints for the k1s process (k1s server
// --debug-profile), so that where its memory and CPU go can be measured on a running node.
package profiling

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/k1s-io/k1s/internal/component"
)

// ValidateAddress checks that addr is host:port on a loopback address: the profiles show
// memory contents and the command line, so they are never served to the network.
func ValidateAddress(flag, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		return fmt.Errorf("--%s %q is not host:port (like 127.0.0.1:6060)", flag, addr)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--%s %q must be on a loopback address (like 127.0.0.1:6060): the profiles are not for the network", flag, addr)
	}
	return nil
}

// New returns the component that serves /debug/pprof/ on addr (already validated). flag names
// the flag in errors (the port taken, say).
func New(flag, addr string) component.Component {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return component.NewFunc("debug profile", func(ctx context.Context) error {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("--%s %s: %w", flag, addr, err)
		}
		go func() {
			<-ctx.Done()
			shutdown, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_ = srv.Shutdown(shutdown)
		}()
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}, nil)
}
