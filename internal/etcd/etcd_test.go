package etcd

import (
	"io"
	"net"
	"slices"
	"testing"

	"github.com/sirupsen/logrus"
)

func TestSingleMemberElectsQuickly(t *testing.T) {
	fast := []string{"--heartbeat-interval=50", "--election-timeout=250"}
	peer := &PeerConfig{IP: net.ParseIP("127.0.0.1"), Port: 2380}
	for _, tc := range []struct {
		name  string
		peer  *PeerConfig
		extra []string
		fast  bool
	}{
		{"single server", nil, nil, true},
		{"a member that can have peers", peer, nil, false},
		{"the user's heartbeat", nil, []string{"heartbeat-interval=100"}, false},
		{"the user's election timeout", nil, []string{"election-timeout=2000"}, false},
		{"a peer listener the user opened", nil, []string{"listen-peer-urls=http://127.0.0.1:2380"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(Config{Name: "n", DataDir: t.TempDir(), ClientPort: 2379, PeerURL: "http://127.0.0.1:2380",
				Peer: tc.peer, ExtraArgs: tc.extra, Log: &logrus.Logger{Out: io.Discard, Formatter: new(logrus.TextFormatter), Level: logrus.InfoLevel}})
			if err != nil {
				t.Fatal(err)
			}
			got := slices.Contains(s.Args(), fast[0]) && slices.Contains(s.Args(), fast[1])
			if got != tc.fast {
				t.Fatalf("fast election %v, want %v; args %v", got, tc.fast, s.Args())
			}
			if tc.fast && (s.cfg.TickMs != 50 || s.cfg.ElectionMs != 250) {
				t.Fatalf("etcd's config has tick %d ms, election %d ms", s.cfg.TickMs, s.cfg.ElectionMs)
			}
		})
	}
}

func TestHTTPEndpointsApartFromGRPC(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra []string
		want  string
	}{
		{"default", nil, "https://127.0.0.1:2382"},
		{"the user's port", []string{"listen-client-http-urls=https://127.0.0.1:12382"}, "https://127.0.0.1:12382"},
		{"turned off: both on the client port", []string{"listen-client-http-urls="}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(Config{Name: "n", DataDir: t.TempDir(), ClientPort: 2379, HTTPPort: 2382, PeerURL: "http://127.0.0.1:2380",
				ExtraArgs: tc.extra, Log: &logrus.Logger{Out: io.Discard, Formatter: new(logrus.TextFormatter), Level: logrus.InfoLevel}})
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if u := s.HTTPListenURL(); u != nil {
				got = u.String()
			}
			if got != tc.want {
				t.Fatalf("etcd's HTTP endpoints at %q, want %q", got, tc.want)
			}
		})
	}
}
