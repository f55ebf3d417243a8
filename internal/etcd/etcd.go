// Package etcd runs the embedded etcd server of a k1s server.
package etcd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/sirupsen/logrus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/pkg/v3/flags"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/k1s-io/k1s/internal/args"
	"github.com/k1s-io/k1s/internal/logging"
)

// Config is what a k1s server decides about its etcd.
type Config struct {
	// Name is the member name (the node name).
	Name string
	// DataDir is <data-dir>/server/db/etcd.
	DataDir string
	// ClientPort is the client port on 127.0.0.1.
	ClientPort int
	// HTTPPort is the port of etcd's HTTP endpoints (health, version, metrics, the JSON
	// gateway) on 127.0.0.1. Served on the client port beside gRPC, etcd hands every gRPC
	// stream to Go's HTTP/2 server and then to gRPC's handler transport, which costs
	// goroutines and CPU on each of the apiserver's ~65 connections (one per resource); on a
	// port of their own the client port serves gRPC natively (etcd's
	// --listen-client-http-urls). Measured on a one-node server: 117 fewer goroutines and 5 %
	// less CPU to a ready node.
	HTTPPort int
	// PeerURL is the member's peer address. A single server never listens on it: etcd's raft
	// peers are other servers, and an open peer port would be an unauthenticated way into the
	// database. It only names the member, unless --etcd-arg listen-peer-urls=… opens a listener.
	PeerURL string
	// CAFile verifies clients; CertFile and KeyFile serve.
	CAFile, CertFile, KeyFile string
	// Peer makes this member one of a cluster that can grow; nil for a single server.
	Peer *PeerConfig
	// Tombstone is written when the cluster removes this member.
	Tombstone string
	// ExtraArgs are the user's --etcd-arg values, in etcd's own flag syntax.
	ExtraArgs []string
	Log       *logrus.Logger
}

// PeerConfig is how a member of a cluster that can grow meets the others: on IP, port
// EtcdPeerPort for peers and the client port for the other servers' k1s, both with mutual TLS
// (peers with certificates of their own CA).
type PeerConfig struct {
	IP                        net.IP
	Port                      int
	CAFile, CertFile, KeyFile string
	// InitialCluster is the cluster a new member joins (name=peerURL,…, as MemberAddAsLearner
	// returned it); empty for the first member, or one with data.
	InitialCluster string
}

// PeerURL is the member's peer URL on ip.
func PeerURL(ip net.IP, port int) string {
	return "https://" + net.JoinHostPort(ip.String(), strconv.Itoa(port))
}

// Server is the embedded etcd, as a component.Component.
type Server struct {
	cfg      *embed.Config
	args     []string
	stopping *atomic.Bool
	log      *logrus.Logger
	// removed is set when etcd says the cluster removed this member; tombstone is then written.
	removed   *atomic.Bool
	tombstone string
	// quorumLost says why the member's cluster cannot answer, while it cannot (set by the
	// Membership component).
	quorumLost atomic.Pointer[string]

	mu     sync.Mutex
	etcd   *embed.Etcd
	cancel context.CancelFunc
	exited chan struct{}
	err    error
}

// New validates cfg and returns the etcd component. Nothing is started or written yet.
func New(c Config) (*Server, error) {
	ecfg := embed.NewConfig()
	fs := flag.NewFlagSet("etcd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	ecfg.AddFlags(fs)

	clientURL := fmt.Sprintf("https://127.0.0.1:%d", c.ClientPort)
	peerURL := c.PeerURL
	clientURLs := clientURL
	if p := c.Peer; p != nil {
		peerURL = PeerURL(p.IP, p.Port)
		clientURLs += ",https://" + net.JoinHostPort(p.IP.String(), strconv.Itoa(c.ClientPort))
	}
	defaults := map[string]string{
		"name":                        c.Name,
		"data-dir":                    c.DataDir,
		"listen-client-urls":          clientURLs,
		"advertise-client-urls":       clientURLs,
		"initial-advertise-peer-urls": peerURL,
		"initial-cluster":             c.Name + "=" + peerURL,
		"trusted-ca-file":             c.CAFile,
		"cert-file":                   c.CertFile,
		"key-file":                    c.KeyFile,
		"client-cert-auth":            "true",
		"listen-metrics-urls":         "",
		// A small box: keep the database and its memory bounded.
		"quota-backend-bytes":       "2147483648",
		"auto-compaction-mode":      "periodic",
		"auto-compaction-retention": "1h",
		"snapshot-count":            "10000",
		// etcd's warning thresholds assume data-centre SSDs (100 ms to apply, 300 ms to
		// answer); on an SD card or a loaded two-core box every start would warn. A second is
		// slow enough to be worth a line anywhere.
		"warning-apply-duration":         "1s",
		"warning-unary-request-duration": "1s",
		"log-level":                      "info",
	}
	if c.HTTPPort != 0 {
		defaults["listen-client-http-urls"] = fmt.Sprintf("https://127.0.0.1:%d", c.HTTPPort)
	}
	if p := c.Peer; p != nil {
		defaults["listen-peer-urls"] = peerURL
		defaults["peer-trusted-ca-file"] = p.CAFile
		defaults["peer-cert-file"] = p.CertFile
		defaults["peer-key-file"] = p.KeyFile
		defaults["peer-client-cert-auth"] = "true"
		if p.InitialCluster != "" {
			defaults["initial-cluster"] = p.InitialCluster
		}
	}
	// Moving a listener moves what is advertised with it, unless the user says otherwise.
	user := map[string]string{}
	for _, a := range c.ExtraArgs {
		if k, v, err := args.Split(a); err == nil {
			user[k] = v
		}
	}
	for k, v := range singleMemberTiming(c.Peer != nil, user) {
		defaults[k] = v
	}
	for listen, advertised := range map[string][]string{
		"listen-client-urls": {"advertise-client-urls"},
		"listen-peer-urls":   {"initial-advertise-peer-urls", "initial-cluster"},
	} {
		urls, ok := user[listen]
		if !ok {
			continue
		}
		for _, key := range advertised {
			if _, set := user[key]; set {
				continue
			}
			defaults[key] = urls
			if key == "initial-cluster" {
				defaults[key] = c.Name + "=" + urls
			}
		}
	}
	merged, err := args.Merge(defaults, c.ExtraArgs)
	if err != nil {
		return nil, fmt.Errorf("--etcd-arg: %w", err)
	}
	if err := fs.Parse(merged); err != nil {
		return nil, fmt.Errorf("--etcd-arg: %w (see etcd's flags for valid names)", err)
	}
	// embed.Config.AddFlags binds URL lists to flag values only; etcd's own main copies them
	// into the config the same way.
	ecfg.ListenPeerUrls = nil
	if _, ok := user["listen-peer-urls"]; ok || c.Peer != nil {
		ecfg.ListenPeerUrls = flags.UniqueURLsFromFlag(fs, "listen-peer-urls")
	}
	ecfg.AdvertisePeerUrls = flags.UniqueURLsFromFlag(fs, "initial-advertise-peer-urls")
	ecfg.ListenClientUrls = flags.UniqueURLsFromFlag(fs, "listen-client-urls")
	ecfg.ListenClientHttpUrls = flags.UniqueURLsFromFlag(fs, "listen-client-http-urls")
	ecfg.AdvertiseClientUrls = flags.UniqueURLsFromFlag(fs, "advertise-client-urls")
	ecfg.ListenMetricsUrls = flags.UniqueURLsFromFlag(fs, "listen-metrics-urls")

	if c.Peer != nil && c.Peer.InitialCluster != "" {
		// etcd's main, not embed, defines this flag.
		ecfg.ClusterState = embed.ClusterStateFlagExisting
		merged = append(merged, "--initial-cluster-state="+embed.ClusterStateFlagExisting)
	}
	stopping := &atomic.Bool{}
	ecfg.Logger = "zap"
	removed := &atomic.Bool{}
	// etcd says only in its log why its server stopped: a member the others removed is told
	// so by its peers, and stops with this line.
	zl := logging.NewZap(c.Log, "etcd", stopping).WithOptions(zap.Hooks(func(e zapcore.Entry) error {
		if strings.Contains(e.Message, "data-dir used by this member must be removed") {
			removed.Store(true)
		}
		return nil
	}))
	ecfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zl)
	if err := ecfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid etcd configuration: %w", err)
	}
	if len(ecfg.ListenPeerUrls) == 0 {
		merged = append(merged, "--listen-peer-urls=")
	}
	return &Server{cfg: ecfg, args: merged, stopping: stopping, log: c.Log, exited: make(chan struct{}),
		removed: removed, tombstone: c.Tombstone}, nil
}

// PeerListenURL is where etcd listens for its peers, or nil: by default it does not.
func (s *Server) PeerListenURL() *url.URL {
	if len(s.cfg.ListenPeerUrls) == 0 {
		return nil
	}
	u := s.cfg.ListenPeerUrls[0]
	return &u
}

// HTTPListenURL is where etcd serves its HTTP endpoints apart from gRPC, or nil when it serves
// both on the client port.
func (s *Server) HTTPListenURL() *url.URL {
	if len(s.cfg.ListenClientHttpUrls) == 0 {
		return nil
	}
	u := s.cfg.ListenClientHttpUrls[0]
	return &u
}

// Args is etcd's effective command line.
func (s *Server) Args() []string { return s.args }

// ClientURL is the URL the apiserver reaches etcd at.
func (s *Server) ClientURL() *url.URL {
	u := s.cfg.ListenClientUrls[0]
	return &u
}

func (s *Server) Name() string { return "etcd" }

// localClient is a client of the running etcd without listener or TLS, for k1s's own reads and
// writes. The caller closes it.
func (s *Server) localClient() (*clientv3.Client, error) {
	s.mu.Lock()
	e := s.etcd
	s.mu.Unlock()
	if e == nil {
		return nil, errors.New("etcd is not running")
	}
	return v3client.New(e.Server), nil
}

// RangePrefix calls fn with the key and value of every key under prefix, a page at a time,
// through an in-process client (no listener, no TLS): for what k1s reads of its own data
// before the apiserver starts. etcd must be ready.
func (s *Server) RangePrefix(ctx context.Context, prefix string, fn func(key, value []byte) error) error {
	client, err := s.localClient()
	if err != nil {
		return err
	}
	defer client.Close()
	end := clientv3.GetPrefixRangeEnd(prefix)
	// Every page at the first one's revision: one consistent view.
	var rev int64
	for key := prefix; ; {
		resp, err := client.Get(ctx, key, clientv3.WithRange(end), clientv3.WithLimit(100), clientv3.WithRev(rev))
		if err != nil {
			return fmt.Errorf("reading %s from etcd: %w", prefix, err)
		}
		rev = resp.Header.Revision
		for _, kv := range resp.Kvs {
			if err := fn(kv.Key, kv.Value); err != nil {
				return err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return nil
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

func (s *Server) Start(ctx context.Context) error {
	if err := os.MkdirAll(s.cfg.Dir, 0o700); err != nil {
		return fmt.Errorf("creating etcd data directory: %w", err)
	}
	e, err := embed.StartEtcd(s.cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	s.mu.Lock()
	s.etcd, s.cancel = e, cancel
	s.mu.Unlock()
	go func() {
		var err error
		select {
		case err = <-e.Err():
		case <-e.Server.StopNotify():
			err = errors.New("etcd server stopped")
			if s.removed.Load() {
				err = s.writeTombstone()
			}
		case <-ctx.Done():
		}
		e.Close()
		s.mu.Lock()
		if ctx.Err() == nil {
			s.err = err
		}
		s.mu.Unlock()
		close(s.exited)
	}()
	return nil
}

func (s *Server) Ready(context.Context) error {
	select {
	case <-s.etcd.Server.ReadyNotify():
		return nil
	default:
		return errors.New("etcd has not yet joined its cluster and served clients")
	}
}

func (s *Server) Exited() <-chan struct{} { return s.exited }

func (s *Server) Stop() error {
	s.mu.Lock()
	cancel := s.cancel
	s.mu.Unlock()
	if cancel == nil {
		return nil
	}
	s.stopping.Store(true)
	cancel()
	<-s.exited
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// singleMemberTiming is raft's timing for a member that has no peers and listens for none.
// At every start a lone member waits for its election timeout before it elects itself: etcd
// skips all but the last tick of it, but raft randomises the timeout to up to twice its value,
// so with etcd's defaults (a 100 ms tick, a 1 s timeout) the wait is 0.1–1 s, 0.55 s on
// average, during which nothing else of the server can start. Ticks of 50 ms and a timeout of
// 5 of them make it 0.05–0.25 s. The timeout only matters against peers, which such a member
// has none of; the cost is 10 more timer wake-ups a second. A member that can have peers, or
// a user who set either value, keeps etcd's.
func singleMemberTiming(canHavePeers bool, user map[string]string) map[string]string {
	if canHavePeers {
		return nil
	}
	for _, k := range []string{"listen-peer-urls", "heartbeat-interval", "election-timeout"} {
		if _, set := user[k]; set {
			return nil
		}
	}
	return map[string]string{"heartbeat-interval": "50", "election-timeout": "250"}
}
