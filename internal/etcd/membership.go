package etcd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/k1s-io/k1s/internal/component"
)

// ClientTLS is the TLS configuration of a k1s client of etcd: a certificate of the etcd CA.
func ClientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	info := transport.TLSInfo{TrustedCAFile: caFile, CertFile: certFile, KeyFile: keyFile}
	cfg, err := info.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("etcd client credentials: %w", err)
	}
	return cfg, nil
}

// NewClient is a client of the etcd members at endpoints.
func NewClient(endpoints []string, tlsCfg *tls.Config) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: endpoints, TLS: tlsCfg, DialTimeout: 5 * time.Second,
		// The client's own retries are the caller's progress lines, not warnings.
		Logger: zap.NewNop()})
}

// AddLearner adds this server (name, at peerURL) to the cluster of the members at endpoints
// as a learner, and returns the initial-cluster it starts with. Before the add it checks that
// every member's peer port answers from here (so that a firewall mistake never leaves a dead
// learner behind), and removes the member this server left before at its peer URL (a join
// that failed, or data since lost). A member of its name at another address is refused.
func AddLearner(ctx context.Context, client *clientv3.Client, name, peerURL string, log *logrus.Logger) (initialCluster string, err error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	list, err := client.MemberList(ctx)
	if err != nil {
		return "", fmt.Errorf("listing the cluster's etcd members at %s: %w", strings.Join(client.Endpoints(), ","), err)
	}
	for _, m := range list.Members {
		if m.Name == name && !slices.Contains(m.PeerURLs, peerURL) {
			return "", fmt.Errorf("etcd member %q already exists at %s: another server has this node name (choose another --node-name), or if it is this server's earlier self at another address, remove it first (kubectl delete node %s)", m.Name, strings.Join(m.PeerURLs, ","), m.Name)
		}
		if slices.Contains(m.PeerURLs, peerURL) {
			// This server's own earlier member (a join that failed, or data since lost).
			log.Infof("removing etcd member %x (%q at %s) that this server left before", m.ID, m.Name, strings.Join(m.PeerURLs, ","))
			if _, err := client.MemberRemove(ctx, m.ID); err != nil {
				return "", fmt.Errorf("removing the earlier etcd member %x of this server: %w", m.ID, err)
			}
			continue
		}
		for _, u := range m.PeerURLs {
			if err := probe(ctx, u); err != nil {
				return "", fmt.Errorf("etcd member %s's peer address %s is not reachable from this server (%v): open %s/tcp between the servers", m.Name, u, err, portOf(u))
			}
		}
	}
	added, err := client.MemberAddAsLearner(ctx, []string{peerURL})
	for attempt := 1; err != nil && errors.Is(err, rpctypes.ErrTooManyLearners) && attempt < 10; attempt++ {
		// Another server is joining: etcd takes one learner at a time.
		log.Infof("another server is joining etcd; waiting for its promotion (attempt %d)", attempt)
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(2 * time.Second):
		}
		added, err = client.MemberAddAsLearner(ctx, []string{peerURL})
	}
	if err != nil {
		return "", fmt.Errorf("adding this server to etcd as a learner: %w", err)
	}
	var parts []string
	for _, m := range added.Members {
		n := m.Name
		if m.ID == added.Member.ID {
			n = name
		}
		for _, u := range m.PeerURLs {
			parts = append(parts, n+"="+u)
		}
	}
	return strings.Join(parts, ","), nil
}

func probe(ctx context.Context, peerURL string) error {
	u, err := url.Parse(peerURL)
	if err != nil {
		return err
	}
	d := net.Dialer{Timeout: 3 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return err
	}
	return conn.Close()
}

func portOf(peerURL string) string {
	if u, err := url.Parse(peerURL); err == nil {
		return u.Port()
	}
	return "the peer port"
}

// Membership makes this member what the server asks: its peer URL the current one (a single
// server turned into the first of a cluster, or an address that changed), and a voter (a
// learner is promoted once it has caught up with the leader).
type Membership struct {
	etcd *Server
	// remote are other members' client URLs (a joining server's); the local member serves
	// clients once it is a voter.
	remote  []string
	tls     *tls.Config
	peerURL string
	log     *logrus.Logger
}

// NewMembership returns the components that run after etcd on a server of a cluster: one
// ready when the member is a voter with its peer URL (so the apiserver starts only on a voting
// member), and the watch that notices a lost quorum (see QuorumLost).
func NewMembership(s *Server, remote []string, tlsCfg *tls.Config, peerURL string, log *logrus.Logger) (membership, quorumWatch component.Component) {
	m := &Membership{etcd: s, remote: remote, tls: tlsCfg, peerURL: peerURL, log: log}
	membership = component.Task("etcd membership", "making this member a voter", m.run)
	quorumWatch = component.NewFunc("etcd quorum watch", func(ctx context.Context) error {
		m.watchQuorum(ctx)
		return nil
	}, nil)
	return membership, quorumWatch
}

func (m *Membership) run(ctx context.Context, progress component.Progress) error {
	m.etcd.mu.Lock()
	e := m.etcd.etcd
	m.etcd.mu.Unlock()
	if e == nil {
		return errors.New("etcd is not running")
	}
	id := uint64(e.Server.MemberID())
	// A learner serves no member API: it asks the others (those it joined through, or after a
	// restart before its promotion, the members its data knows).
	endpoints := []string{m.etcd.ClientURL().String()}
	if e.Server.IsLearner() {
		endpoints = m.remote
		for _, member := range e.Server.Cluster().Members() {
			if uint64(member.ID) != id {
				endpoints = append(endpoints, member.ClientURLs...)
			}
		}
	}
	client, err := NewClient(endpoints, m.tls)
	if err != nil {
		return err
	}
	defer client.Close()
	for attempt := 0; ; attempt++ {
		done, state, err := m.reconcile(ctx, client, id)
		if done {
			return nil
		}
		if err != nil {
			state = state + ": " + err.Error()
		}
		progress(state)
		if attempt%20 == 19 {
			m.log.Infof("etcd member %x: %s", id, state)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// reconcile takes one step towards a voting member with the right peer URL.
func (m *Membership) reconcile(ctx context.Context, client *clientv3.Client, id uint64) (done bool, state string, err error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	list, err := client.MemberList(ctx)
	if err != nil {
		return false, "listing etcd members", err
	}
	i := slices.IndexFunc(list.Members, func(x *etcdserverpb.Member) bool { return x.ID == id })
	if i < 0 {
		return false, "waiting for this member in the member list", nil
	}
	me := list.Members[i]
	if !slices.Equal(me.PeerURLs, []string{m.peerURL}) {
		m.log.Infof("etcd member %x: peer URL %s (was %s)", id, m.peerURL, strings.Join(me.PeerURLs, ","))
		if _, err := client.MemberUpdate(ctx, id, []string{m.peerURL}); err != nil {
			return false, "updating this member's peer URL", err
		}
	}
	if me.IsLearner {
		if _, err := client.MemberPromote(ctx, id); err != nil {
			return false, "a learner catching up with the leader before its promotion", err
		}
		m.log.Infof("etcd member %x is a voting member", id)
	}
	return true, "", nil
}

// RemoteClientURL is where other servers reach this member's clients: the advertised client
// URL that is not on loopback (the first one when there is none).
func (s *Server) RemoteClientURL() string {
	for _, u := range s.cfg.AdvertiseClientUrls {
		if ip := net.ParseIP(u.Hostname()); ip == nil || !ip.IsLoopback() {
			return u.String()
		}
	}
	return s.cfg.AdvertiseClientUrls[0].String()
}

// ErrRemoved says how a server whose member was removed gets back into its cluster.
func ErrRemoved(dbDir string) error {
	return fmt.Errorf("this server's etcd member was removed from its cluster (its Node was deleted): to join again, stop k1s, move %s aside, and start it with --server https://<another server>:6443 and the server token", dbDir)
}

// writeTombstone marks the data of a removed member, so that it never starts again.
func (s *Server) writeTombstone() error {
	if s.tombstone != "" {
		if err := os.WriteFile(s.tombstone, []byte("this member was removed from its etcd cluster\n"), 0o600); err != nil {
			s.log.Warnf("writing the tombstone %s: %v", s.tombstone, err)
		}
	}
	return ErrRemoved(filepath.Dir(s.cfg.Dir))
}

// Members is the member API of a cluster, through a client (the server's own etcd).
type Members struct{ Client *clientv3.Client }

// Member is an etcd member: its ID, name (empty while it has not started) and the hosts of
// its peer URLs.
type Member struct {
	ID        uint64
	Name      string
	PeerHosts []string
}

// List lists the members.
func (m Members) List(ctx context.Context) ([]Member, error) {
	resp, err := m.Client.MemberList(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Member, 0, len(resp.Members))
	for _, x := range resp.Members {
		m := Member{ID: x.ID, Name: x.Name}
		for _, u := range x.PeerURLs {
			if parsed, err := url.Parse(u); err == nil {
				m.PeerHosts = append(m.PeerHosts, parsed.Hostname())
			}
		}
		out = append(out, m)
	}
	return out, nil
}

// Remove removes a member.
func (m Members) Remove(ctx context.Context, id uint64) error {
	_, err := m.Client.MemberRemove(ctx, id)
	return err
}

// Close closes the client.
func (m Members) Close() error { return m.Client.Close() }

// ForceNewCluster turns the stopped member's data into a one-member cluster of its own
// (etcd's --force-new-cluster), keeping the data: how a server that lost its quorum for good
// recovers. It starts etcd once, waits until it serves, and stops it.
func (s *Server) ForceNewCluster(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(s.cfg.Dir, "member")); err != nil {
		return fmt.Errorf("no etcd data in %s to reset: %w", s.cfg.Dir, err)
	}
	s.cfg.ForceNewCluster = true
	return s.runOnce(ctx, func(context.Context) error { return nil })
}

// runOnce starts the stopped etcd, calls fn once it serves, and stops it. It opens no client
// listener: fn reads through the in-process client, and the listener's certificates may not
// exist yet (a restore on a new machine writes them from what it reads). Without this, etcd,
// once elected, fails to load them and stops while fn reads.
func (s *Server) runOnce(ctx context.Context, fn func(ctx context.Context) error) error {
	s.cfg.ListenClientUrls, s.cfg.ListenClientHttpUrls, s.cfg.ListenMetricsUrls = nil, nil, nil
	if err := s.Start(ctx); err != nil {
		return fmt.Errorf("starting etcd: %w", err)
	}
	defer s.Stop()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	select {
	case <-s.etcd.Server.ReadyNotify():
		return fn(ctx)
	case <-s.exited:
		s.mu.Lock()
		err := s.err
		s.mu.Unlock()
		return fmt.Errorf("etcd stopped: %v", err)
	case <-ctx.Done():
		return fmt.Errorf("etcd did not serve within 2 minutes: %w", ctx.Err())
	}
}

// watchQuorum logs, once a minute while it lasts, that this member sees no leader: the
// cluster lost its quorum, and the apiserver's requests fail until it is back.
func (m *Membership) watchQuorum(ctx context.Context) {
	m.etcd.mu.Lock()
	e := m.etcd.etcd
	m.etcd.mu.Unlock()
	var lost time.Time
	var logged time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
		if e.Server.Leader() != 0 {
			m.etcd.quorumLost.Store(nil)
			if !lost.IsZero() {
				m.log.Infof("etcd has a leader again: quorum is back after %s", time.Since(lost).Round(time.Second))
			}
			lost = time.Time{}
			continue
		}
		if lost.IsZero() {
			lost = time.Now()
		}
		if time.Since(lost) < 5*time.Second {
			continue
		}
		members := 0
		for _, member := range e.Server.Cluster().Members() {
			if !member.IsLearner {
				members++
			}
		}
		why := fmt.Sprintf("etcd has lost its quorum: fewer than %d of its %d voting members (servers) answer; the API is unavailable until they do (start the other servers, or see 'k1s server --cluster-reset')", members/2+1, members)
		m.etcd.quorumLost.Store(&why)
		if time.Since(logged) >= time.Minute {
			logged = time.Now()
			m.log.Warnf("etcd has had no leader for %s: fewer than %d of its %d voting members answer, and the API fails until they do; start the other servers, or if they are lost for good, stop k1s here and run 'k1s server --cluster-reset' (keeps this server's data)", time.Since(lost).Round(time.Second), members/2+1, members)
		}
	}
}

// BootstrapKey is where k1s keeps the cluster's sealed bootstrap data in etcd itself, beside
// the apiserver's /registry: a snapshot then carries it, and a restore on a new machine opens
// it with the server token (the Secret copy may be encrypted with a key inside it).
const BootstrapKey = "/k1s/bootstrap"

// Put writes key through an in-process client. etcd must be ready.
func (s *Server) Put(ctx context.Context, key string, value []byte) error {
	client, err := s.localClient()
	if err != nil {
		return err
	}
	defer client.Close()
	if _, err := client.Put(ctx, key, string(value)); err != nil {
		return fmt.Errorf("writing %s to etcd: %w", key, err)
	}
	return nil
}

// Peek starts the stopped etcd on its data (as a single member, no peers), reads key, and
// stops it; nil when the key is absent.
func (s *Server) Peek(ctx context.Context, key string) ([]byte, error) {
	var value []byte
	err := s.runOnce(ctx, func(ctx context.Context) error {
		client, err := s.localClient()
		if err != nil {
			return err
		}
		defer client.Close()
		resp, err := client.Get(ctx, key)
		if err != nil {
			return fmt.Errorf("reading %s from etcd: %w", key, err)
		}
		if len(resp.Kvs) > 0 {
			value = resp.Kvs[0].Value
		}
		return nil
	})
	return value, err
}

// QuorumLost says why the member's cluster cannot answer requests ("" while it can).
func (s *Server) QuorumLost() string {
	if why := s.quorumLost.Load(); why != nil {
		return *why
	}
	return ""
}
