package loadbalancer

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// backend is a fake apiserver: /readyz answers per its ready flag, / says its name.
type backend struct {
	name  string
	ready atomic.Bool
	srv   *httptest.Server
}

func newBackend(t *testing.T, name string) *backend {
	b := &backend{name: name}
	b.ready.Store(true)
	b.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" && !b.ready.Load() {
			http.Error(w, "not ready", http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, b.name)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) addr() string { return strings.TrimPrefix(b.srv.URL, "https://") }

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func get(t *testing.T, client *http.Client, url string) string {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		return "error: " + err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestFailoverAndReturn(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	state := filepath.Join(t.TempDir(), "servers.json")
	lb, err := New(Config{Listen: freeAddr(t), Default: a.addr(), StateFile: state, HealthInterval: 50 * time.Millisecond, Log: logrus.New()})
	if err != nil {
		t.Fatal(err)
	}
	if err := lb.SetServers([]string{b.addr(), a.addr()}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- lb.Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Error(err)
		}
	}()
	fresh := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}}
	eventually(t, "the proxy to answer", func() bool { return get(t, fresh, lb.URL()) == "a" })

	// A kept-alive connection to a server that stops being ready is closed by the proxy.
	kept := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	var closed atomic.Bool
	kept.Transport.(*http.Transport).DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &watchedConn{Conn: c, closed: &closed}, nil
	}
	if got := get(t, kept, lb.URL()); got != "a" {
		t.Fatalf("first request went to %q", got)
	}
	a.ready.Store(false)
	eventually(t, "new connections to go to b", func() bool { return get(t, fresh, lb.URL()) == "b" })
	eventually(t, "the kept connection to a to be closed", closed.Load)

	// A server that refuses connections is skipped at once, by the very next connection.
	a.ready.Store(true)
	time.Sleep(300 * time.Millisecond) // a is back: checks every 50 ms
	b.srv.Close()
	if got := get(t, fresh, lb.URL()); got != "a" {
		t.Fatalf("the first request after b went away got %q, want a", got)
	}

	// The servers learned are kept for the next start.
	again, err := New(Config{Listen: freeAddr(t), Default: a.addr(), StateFile: state, Log: logrus.New()})
	if err != nil {
		t.Fatal(err)
	}
	if got := again.Servers(); len(got) != 2 || got[0] != a.addr() || got[1] != b.addr() {
		t.Fatalf("servers after a restart: %v", got)
	}
}

type watchedConn struct {
	net.Conn
	closed *atomic.Bool
}

func (c *watchedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		c.closed.Store(true)
	}
	return n, err
}
