package profiling

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestValidateAddress(t *testing.T) {
	for _, ok := range []string{"127.0.0.1:6060", "[::1]:6060", "localhost:6060"} {
		if err := ValidateAddress("debug-profile", ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"0.0.0.0:6060", "192.0.2.1:6060", ":6060", "6060", "127.0.0.1"} {
		if err := ValidateAddress("debug-profile", bad); err == nil || !strings.Contains(err.Error(), "--debug-profile") {
			t.Errorf("%s: %v, want an error naming the flag", bad, err)
		}
	}
}

func TestServesHeapProfileUntilStopped(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := New("debug-profile", addr)
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	var body string
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/debug/pprof/heap?debug=1")
		if err == nil {
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(data)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no profile served on %s: %v", addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(body, "heap profile") {
		t.Errorf("heap profile: %.200s", body)
	}
	if err := c.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if _, err := http.Get("http://" + addr + "/debug/pprof/"); err == nil {
		t.Error("still serving after Stop")
	}
}

func TestPortTakenNamesTheFlag(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c := New("debug-profile", ln.Addr().String())
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-c.Exited()
	if err := c.Stop(); err == nil || !strings.Contains(err.Error(), "--debug-profile") {
		t.Errorf("taken port: %v, want an error naming the flag", err)
	}
}
