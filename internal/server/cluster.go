package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/k1s-io/k1s/internal/bootstrapdata"
	"github.com/k1s-io/k1s/internal/component"
	"github.com/k1s-io/k1s/internal/controllers"
	"github.com/k1s-io/k1s/internal/etcd"
	"github.com/k1s-io/k1s/internal/fileutil"
	"github.com/k1s-io/k1s/internal/join"
	"github.com/k1s-io/k1s/internal/kubeclient"
	"github.com/k1s-io/k1s/internal/layout"
)

// joinState is what a server joining a cluster received before it wrote anything.
type joinState struct {
	token    join.Token
	bundle   bootstrapdata.Bundle
	etcdURLs []string
}

// planCluster decides, from the flags and the data directory, whether this server's etcd is
// one of a cluster that can grow, and for a server that joins one, fetches and opens the
// cluster's bootstrap data: all before anything is written, so that a wrong token or a
// server that is not clustered leaves no trace.
func planCluster(ctx context.Context, c *completedConfig) error {
	if exists(c.files.EtcdTombstone()) {
		return etcd.ErrRemoved(filepath.Dir(c.files.EtcdDataDir()))
	}
	hasData := exists(filepath.Join(c.files.EtcdDataDir(), "member"))
	wasClustered := exists(c.files.EtcdClustered())
	switch {
	case c.ClusterInit && c.JoinServer != "":
		return errors.New("--cluster-init starts a new cluster and --server joins one: give one of them")
	case c.JoinServer != "" && hasData && !wasClustered:
		return fmt.Errorf("this server has the etcd data of a single server (%s), which cannot join another cluster: start it without --server to keep its cluster (with --cluster-init to let others join it), or move that directory aside to join %s afresh", c.files.EtcdDataDir(), c.JoinServer)
	}
	c.clustered = c.ClusterInit || wasClustered || c.JoinServer != ""
	if c.JoinServer == "" || hasData {
		// A server with data restarts as the member it is: neither --server nor a token.
		return nil
	}
	if c.JoinToken.ID == "" {
		return errors.New("--server needs --token (or --token-file, K1S_TOKEN): the first server's <data-dir>/server/token")
	}
	if err := join.ValidateServerURL(c.JoinServer); err != nil {
		return err
	}
	c.Log.Infof("joining the cluster of %s as server %s", c.JoinServer, c.NodeName)
	// The cluster knows the server token by its authentication only (see Token.ServerAuth).
	auth, err := c.JoinToken.ServerAuth()
	if err != nil {
		return err
	}
	caPEM, err := join.Discover(ctx, c.Log, c.JoinServer, auth, false)
	if err != nil {
		// A token the cluster knows as it is joins nodes, not servers.
		if _, nodeErr := join.Discover(ctx, c.Log, c.JoinServer, c.JoinToken, false); nodeErr == nil {
			return join.ErrNotServerToken
		}
		return err
	}
	sealed, etcdURLs, err := join.FetchBootstrapData(ctx, c.Log, c.JoinServer, caPEM, auth)
	if err != nil {
		return err
	}
	bundle, err := bootstrapdata.Open(sealed, c.JoinToken.Secret)
	if errors.Is(err, bootstrapdata.ErrWrongSecret) {
		return fmt.Errorf("the cluster's bootstrap data does not open with this token: it was sealed with another server token (was server/token replaced?)")
	}
	if err != nil {
		return err
	}
	c.join = &joinState{token: c.JoinToken, bundle: bundle, etcdURLs: etcdURLs}
	return nil
}

// writeJoinData writes what a joining server received (see writeBootstrapData).
func (s *Server) writeJoinData() error {
	if j := s.cfg.join; j != nil {
		return writeBootstrapData(s.cfg.files, j.bundle, j.token)
	}
	return nil
}

// writeBootstrapData writes the cluster's shared CAs, keys and encryption configuration, and
// the server token that opened them (this server's own from now on): on a joining server, and
// on a new machine a snapshot is restored on.
func writeBootstrapData(files layout.Server, bundle bootstrapdata.Bundle, token join.Token) error {
	if err := bundle.WriteTo(files.Dir()); err != nil {
		return fmt.Errorf("writing the cluster's certificates and keys: %w", err)
	}
	return fileutil.WriteAtomic(files.ServerToken(), []byte(token.String()+"\n"), 0o600)
}

// etcdClientTLS is how this server's k1s talks to etcd members.
func (c *completedConfig) etcdClientTLS() (*tls.Config, error) {
	client := c.files.EtcdAPIServerClient()
	return etcd.ClientTLS(c.files.EtcdCA().Cert, client.Cert, client.Key)
}

// etcdPeerURL is where this member meets its peers.
func (c *completedConfig) etcdPeerURL() string {
	return etcd.PeerURL(c.AdvertiseAddress, layout.EtcdPeerPort)
}

// etcdPeer is this member's peer configuration; nil for a single server.
func (c *completedConfig) etcdPeer(initialCluster string) *etcd.PeerConfig {
	if !c.clustered {
		return nil
	}
	peer := c.files.EtcdPeer()
	return &etcd.PeerConfig{IP: c.AdvertiseAddress, Port: layout.EtcdPeerPort, CAFile: c.files.EtcdPeerCA().Cert,
		CertFile: peer.Cert, KeyFile: peer.Key, InitialCluster: initialCluster}
}

// addLearner adds a joining server to the cluster's etcd and returns its etcd, started with
// the cluster it joins.
func (s *Server) addLearner(ctx context.Context) (*etcd.Server, error) {
	cfg := s.cfg
	tlsCfg, err := cfg.etcdClientTLS()
	if err != nil {
		return nil, err
	}
	client, err := etcd.NewClient(cfg.join.etcdURLs, tlsCfg)
	if err != nil {
		return nil, err
	}
	defer client.Close()
	initial, err := etcd.AddLearner(ctx, client, cfg.NodeName, cfg.etcdPeerURL(), cfg.Log)
	if err != nil {
		return nil, err
	}
	cfg.Log.Infof("added to etcd as a learner: %s", initial)
	return newEtcd(cfg, initial)
}

// newMembership is the components that promote this member, keep its peer URL current and
// watch its quorum.
func (s *Server) newMembership(e *etcd.Server) ([]component.Component, error) {
	tlsCfg, err := s.cfg.etcdClientTLS()
	if err != nil {
		return nil, err
	}
	var remote []string
	if s.cfg.join != nil {
		remote = s.cfg.join.etcdURLs
	}
	membership, quorumWatch := etcd.NewMembership(e, remote, tlsCfg, s.cfg.etcdPeerURL(), s.cfg.Log)
	return []component.Component{membership, quorumWatch}, nil
}

// newClusterBootstrap is what a server of a cluster that can grow puts into the cluster for
// the next server to join: the server token's Secret, the bootstrap data sealed with it, and
// where its own etcd member serves.
func (s *Server) newClusterBootstrap(admin *kubeclient.Lazy, e *etcd.Server) component.Component {
	return component.Task("k1s cluster bootstrap", "publishing what joining servers need", func(ctx context.Context, _ component.Progress) error {
		client, err := admin.Client()
		if err != nil {
			return err
		}
		files := s.cfg.files
		usable, err := join.EnsureServerTokenSecret(ctx, client, s.ServerToken, files.ServerTokenCreated())
		if err != nil {
			return err
		}
		if !usable {
			s.cfg.Log.Infof("the server token (%s) was deleted, and stays deleted: no server can join until it is created again", files.ServerToken())
		}
		rel, dirs := files.BootstrapData()
		bundle, err := bootstrapdata.Collect(files.Dir(), rel, dirs)
		if err != nil {
			return err
		}
		sealed, err := join.ReadBootstrapData(ctx, client)
		if err != nil {
			return err
		}
		// The first server publishes; the others never overwrite what every server shares
		// (a server restarting with older files would take the cluster back to them).
		if sealed == nil {
			if sealed, err = bootstrapdata.Seal(bundle, s.ServerToken.Secret); err != nil {
				return err
			}
			if err := join.PublishBootstrapData(ctx, client, sealed); err != nil {
				return err
			}
		} else if published, err := bootstrapdata.Open(sealed, s.ServerToken.Secret); err != nil {
			s.cfg.Log.Infof("the cluster's bootstrap data does not open with this server's token (%v): joining servers need the token of the server that published it", err)
		} else if !published.Equal(bundle) {
			s.cfg.Log.Infof("this server's copy of the keys every server shares differs from the cluster's bootstrap data (%s): servers joining now get the cluster's", strings.Join(differing(published, bundle), ", "))
		}
		// And in etcd beside the apiserver's data, for a restore on a new machine.
		if err := e.Put(ctx, etcd.BootstrapKey, sealed); err != nil {
			return err
		}
		return join.PublishEtcdMember(ctx, client, s.cfg.NodeName, e.RemoteClientURL())
	})
}

// differing are the names of the files two bundles do not agree on.
func differing(a, b bootstrapdata.Bundle) []string {
	var out []string
	for _, name := range a.Names() {
		if !bytes.Equal(a.Files[name], b.Files[name]) {
			out = append(out, name)
		}
	}
	for _, name := range b.Names() {
		if _, ok := a.Files[name]; !ok {
			out = append(out, name)
		}
	}
	return out
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, fs.ErrNotExist)
}

// etcdMembers is the member API of the cluster's etcd, through this server's own member.
func (c *completedConfig) etcdMembers(etcdURL string) func() (controllers.EtcdMemberAPI, error) {
	return func() (controllers.EtcdMemberAPI, error) {
		tlsCfg, err := c.etcdClientTLS()
		if err != nil {
			return nil, err
		}
		client, err := etcd.NewClient([]string{etcdURL}, tlsCfg)
		if err != nil {
			return nil, err
		}
		return etcdMemberAPI{etcd.Members{Client: client}}, nil
	}
}

// etcdMemberAPI adapts etcd.Members to what the controllers package asks.
type etcdMemberAPI struct{ etcd.Members }

func (a etcdMemberAPI) List(ctx context.Context) ([]controllers.EtcdMember, error) {
	members, err := a.Members.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]controllers.EtcdMember, 0, len(members))
	for _, m := range members {
		out = append(out, controllers.EtcdMember{ID: m.ID, Name: m.Name, PeerHosts: m.PeerHosts})
	}
	return out, nil
}
