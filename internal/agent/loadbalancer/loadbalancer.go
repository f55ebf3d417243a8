// Package loadbalancer is a node's local endpoint of the API: a TCP proxy on loopback that
// sends each connection to a live server of the cluster, so that the kubelet, kube-proxy and
// the pod network survive the loss of any one server. TLS stays end to end (the clients verify
// the server's certificate, which covers 127.0.0.1); the proxy only picks the server.
package loadbalancer

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/k1s-io/k1s/internal/fileutil"
)

// Config is a load balancer's configuration.
type Config struct {
	// Listen is where it listens (127.0.0.1:<port>).
	Listen string
	// Default is the server the node was told to join (host:port): used when no other is
	// known or none is healthy.
	Default string
	// StateFile keeps the servers last learned, for the next start.
	StateFile string
	// HealthInterval is how often each server's /readyz is checked (default 2 s).
	HealthInterval time.Duration
	Log            *logrus.Logger
}

// LoadBalancer is the running proxy.
type LoadBalancer struct {
	cfg      Config
	listener net.Listener
	client   *http.Client

	mu sync.Mutex
	// servers are the known servers (host:port), Default included; active is the one new
	// connections go to while it is healthy.
	servers   []string
	active    string
	unhealthy map[string]bool
	// failed counts each server's failed health checks in a row.
	failed map[string]int
	conns  map[string]map[net.Conn]struct{}
	// sweeps counts the times each server's connections were closed (markUnhealthy): a
	// connection dialled across one is closed too. closed is set at shutdown.
	sweeps map[string]int
	closed bool
}

// failuresToDrop is how many health checks in a row a server fails before it is dropped: a
// loaded server (a leader election, a busy two-core box) may miss one. A refused connection
// drops it at once.
const failuresToDrop = 2

// New returns a load balancer with the servers of its state file and cfg.Default. Nothing
// listens yet.
func New(cfg Config) (*LoadBalancer, error) {
	if cfg.HealthInterval == 0 {
		cfg.HealthInterval = 2 * time.Second
	}
	lb := &LoadBalancer{cfg: cfg, unhealthy: map[string]bool{}, failed: map[string]int{}, sweeps: map[string]int{}, conns: map[string]map[net.Conn]struct{}{},
		// Only the server's liveness is read here; the clients verify it on their own TLS.
		client: &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}}}
	saved, err := readState(cfg.StateFile)
	if err != nil {
		return nil, err
	}
	lb.servers = merge(cfg.Default, saved)
	lb.active = lb.servers[0]
	return lb, nil
}

// URL is the https URL clients use.
func (lb *LoadBalancer) URL() string { return "https://" + lb.cfg.Listen }

// Servers are the servers it knows.
func (lb *LoadBalancer) Servers() []string {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	return slices.Clone(lb.servers)
}

// SetServers replaces the known servers (cfg.Default stays) and saves them.
func (lb *LoadBalancer) SetServers(servers []string) error {
	next := merge(lb.cfg.Default, servers)
	lb.mu.Lock()
	if slices.Equal(next, lb.servers) {
		lb.mu.Unlock()
		return nil
	}
	lb.servers = next
	if !slices.Contains(next, lb.active) {
		lb.active = next[0]
	}
	lb.mu.Unlock()
	lb.cfg.Log.Infof("API load balancer: servers %v", next)
	data, err := json.Marshal(servers)
	if err != nil {
		return err
	}
	return fileutil.WriteAtomic(lb.cfg.StateFile, data, 0o600)
}

// Serve listens and proxies until ctx ends.
func (lb *LoadBalancer) Serve(ctx context.Context) error {
	l, err := net.Listen("tcp", lb.cfg.Listen)
	if err != nil {
		return fmt.Errorf("the API load balancer cannot listen on %s: %w (is another k1s agent running, or is the port taken? --lb-server-port changes it)", lb.cfg.Listen, err)
	}
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	go lb.checkHealth(ctx)
	for {
		conn, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				lb.closeAll()
				return nil
			}
			return fmt.Errorf("the API load balancer: %w", err)
		}
		go lb.proxy(ctx, conn)
	}
}

// candidates are the servers to try for a new connection: the active one, then the other
// healthy ones, then (when none answers) the unhealthy ones.
func (lb *LoadBalancer) candidates() []string {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	var healthy, sick []string
	for _, s := range append([]string{lb.active}, lb.servers...) {
		if slices.Contains(healthy, s) || slices.Contains(sick, s) {
			continue
		}
		if lb.unhealthy[s] {
			sick = append(sick, s)
		} else {
			healthy = append(healthy, s)
		}
	}
	return append(healthy, sick...)
}

func (lb *LoadBalancer) proxy(ctx context.Context, client net.Conn) {
	var upstream net.Conn
	var server string
	d := net.Dialer{Timeout: 3 * time.Second}
	lb.mu.Lock()
	sweeps := maps.Clone(lb.sweeps)
	lb.mu.Unlock()
	for _, s := range lb.candidates() {
		conn, err := d.DialContext(ctx, "tcp", s)
		if err == nil {
			upstream, server = conn, s
			break
		}
		lb.markUnhealthy(s, err)
	}
	if upstream == nil {
		client.Close()
		return
	}
	lb.mu.Lock()
	if lb.closed || lb.sweeps[server] != sweeps[server] {
		// Dropped (or shut down) during the dial: its sweep is over.
		lb.mu.Unlock()
		client.Close()
		upstream.Close()
		return
	}
	if lb.active != server && !lb.unhealthy[server] {
		// Stay on the server that answered.
		lb.active = server
	}
	if lb.conns[server] == nil {
		lb.conns[server] = map[net.Conn]struct{}{}
	}
	lb.conns[server][client] = struct{}{}
	lb.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(upstream, client); done <- struct{}{} }()
	go func() { _, _ = io.Copy(client, upstream); done <- struct{}{} }()
	<-done
	client.Close()
	upstream.Close()
	lb.mu.Lock()
	delete(lb.conns[server], client)
	lb.mu.Unlock()
}

// markUnhealthy takes a server out of rotation and closes the connections to it, so that
// watches reconnect to another server at once instead of hanging on a dead one.
func (lb *LoadBalancer) markUnhealthy(server string, why error) {
	lb.mu.Lock()
	if lb.unhealthy[server] {
		lb.mu.Unlock()
		return
	}
	lb.unhealthy[server] = true
	lb.sweeps[server]++
	conns := lb.conns[server]
	delete(lb.conns, server)
	if lb.active == server {
		for _, s := range lb.servers {
			if !lb.unhealthy[s] {
				lb.active = s
				break
			}
		}
	}
	active := lb.active
	lb.mu.Unlock()
	lb.cfg.Log.Infof("API load balancer: server %s is down (%v); %d connections moved, now using %s", server, why, len(conns), active)
	for c := range conns {
		c.Close()
	}
}

func (lb *LoadBalancer) markHealthy(server string) {
	lb.mu.Lock()
	was := lb.unhealthy[server]
	delete(lb.unhealthy, server)
	lb.mu.Unlock()
	if was {
		lb.cfg.Log.Infof("API load balancer: server %s is back", server)
	}
}

func (lb *LoadBalancer) checkHealth(ctx context.Context) {
	ticker := time.NewTicker(lb.cfg.HealthInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		for _, s := range lb.Servers() {
			err := lb.ready(ctx, s)
			lb.mu.Lock()
			if err != nil {
				lb.failed[s]++
			} else {
				lb.failed[s] = 0
			}
			failed := lb.failed[s]
			lb.mu.Unlock()
			switch {
			case err == nil:
				lb.markHealthy(s)
			case failed >= failuresToDrop || isRefused(err):
				lb.markUnhealthy(s, err)
			}
		}
	}
}

// ready asks a server's /readyz, which the apiserver answers without credentials: a server
// whose etcd lost its quorum is not ready either.
func (lb *LoadBalancer) ready(ctx context.Context, server string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+server+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := lb.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz: %s", resp.Status)
	}
	return nil
}

func (lb *LoadBalancer) closeAll() {
	lb.mu.Lock()
	all := lb.conns
	lb.conns = map[string]map[net.Conn]struct{}{}
	lb.closed = true
	lb.mu.Unlock()
	for _, conns := range all {
		for c := range conns {
			c.Close()
		}
	}
}

func isRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

// merge is def followed by the other servers, without duplicates.
func merge(def string, servers []string) []string {
	out := []string{def}
	for _, s := range servers {
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

func readState(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var servers []string
	if err := json.Unmarshal(data, &servers); err != nil {
		// A damaged list is relearned from the cluster.
		return nil, nil
	}
	return servers, nil
}
