package component

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) add(e string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events...)
}

func (r *recorder) Debugf(string, ...any)            {}
func (r *recorder) Infof(format string, args ...any) { r.add("log: " + fmt.Sprintf(format, args...)) }
func (r *recorder) Warnf(format string, args ...any) { r.add("warn: " + fmt.Sprintf(format, args...)) }

// blocking is a component that runs until its context ends, becoming ready after readyAfter.
func blocking(r *recorder, name string, readyAfter time.Duration) *Func {
	var start atomic.Int64
	return NewFunc(name, func(ctx context.Context) error {
		start.Store(time.Now().UnixNano())
		r.add("start " + name)
		<-ctx.Done()
		r.add("stop " + name)
		return errors.New("upstream error on the way out")
	}, func(context.Context) error {
		if s := start.Load(); s == 0 || time.Since(time.Unix(0, s)) < readyAfter {
			return errors.New("warming up")
		}
		return nil
	})
}

func TestStartInOrderStopInReverse(t *testing.T) {
	r := &recorder{}
	m := &Manager{Log: r, PollInterval: time.Millisecond, ReportInterval: 5 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		done <- m.Run(ctx, blocking(r, "a", 20*time.Millisecond), blocking(r, "b", 0), blocking(r, "c", 0))
	}()
	for !contains(r.list(), "log: k1s is ready") {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after a requested stop = %v, want nil", err)
	}
	var order []string
	for _, e := range r.list() {
		if strings.HasPrefix(e, "start ") || strings.HasPrefix(e, "stop ") {
			order = append(order, e)
		}
	}
	want := []string{"start a", "start b", "start c", "stop c", "stop b", "stop a"}
	if strings.Join(order, ",") != strings.Join(want, ",") {
		t.Fatalf("order %v, want %v", order, want)
	}
	if !containsPrefix(r.list(), "log: still waiting for a") {
		t.Errorf("no progress line while waiting for a: %v", r.list())
	}
}

func TestComponentExitStopsTheRest(t *testing.T) {
	r := &recorder{}
	m := &Manager{Log: r, PollInterval: time.Millisecond}
	crash := make(chan struct{})
	failing := NewFunc("failing", func(ctx context.Context) error {
		<-crash
		return errors.New("disk full")
	}, nil)
	done := make(chan error)
	go func() { done <- m.Run(context.Background(), blocking(r, "a", 0), failing) }()
	for !contains(r.list(), "log: k1s is ready") {
		time.Sleep(time.Millisecond)
	}
	close(crash)
	err := <-done
	if err == nil || !strings.Contains(err.Error(), "failing stopped: disk full") {
		t.Fatalf("Run = %v, want the failing component's cause", err)
	}
	if !contains(r.list(), "stop a") {
		t.Fatal("the other component was not stopped")
	}
}

func TestExitBeforeReadyFailsStart(t *testing.T) {
	r := &recorder{}
	m := &Manager{Log: r, PollInterval: time.Millisecond}
	early := NewFunc("early", func(context.Context) error { return errors.New("bad flag") },
		func(context.Context) error { return errors.New("never ready") })
	err := m.Run(context.Background(), blocking(r, "a", 0), early, blocking(r, "never-started", 0))
	if err == nil || !strings.Contains(err.Error(), "bad flag") {
		t.Fatalf("Run = %v, want the early exit's cause", err)
	}
	if contains(r.list(), "start never-started") {
		t.Fatal("a component after the failed one was started")
	}
	if !contains(r.list(), "stop a") {
		t.Fatal("the started component was not stopped")
	}
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

func containsPrefix(list []string, p string) bool {
	for _, e := range list {
		if strings.HasPrefix(e, p) {
			return true
		}
	}
	return false
}

func TestBackgroundOverlapsAndAwaitWaits(t *testing.T) {
	r := &recorder{}
	m := &Manager{Log: r, PollInterval: time.Millisecond}
	release := make(chan struct{})
	slow := NewFunc("slow", func(ctx context.Context) error {
		r.add("start slow")
		<-ctx.Done()
		r.add("stop slow")
		return nil
	}, func(context.Context) error {
		select {
		case <-release:
			return nil
		default:
			return errors.New("not yet")
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		done <- m.Run(ctx, Background(slow), blocking(r, "middle", 0), Await(slow), blocking(r, "after", 0))
	}()
	for !contains(r.list(), "start middle") {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	if contains(r.list(), "start after") {
		t.Fatal("a component after Await started before the background one was ready")
	}
	close(release)
	for !contains(r.list(), "log: k1s is ready") {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var stops []string
	for _, e := range r.list() {
		if strings.HasPrefix(e, "stop ") {
			stops = append(stops, e)
		}
	}
	if strings.Join(stops, ",") != "stop after,stop middle,stop slow" {
		t.Fatalf("stop order %v", stops)
	}
}

func TestTaskReadyAfterWorkAndIdlesUntilStopped(t *testing.T) {
	release := make(chan struct{})
	task := Task("publish", "publishing cluster-info", func(ctx context.Context, progress Progress) error {
		progress("the apiserver")
		<-release
		return nil
	})
	if err := task.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := task.Ready(context.Background())
		if err != nil && err.Error() == "publishing cluster-info: waiting for the apiserver" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readiness before the work is done: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	for task.Ready(context.Background()) != nil {
		if time.Now().After(deadline) {
			t.Fatal("not ready after the work was done")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case <-task.Exited():
		t.Fatal("the task exited after its work instead of idling")
	case <-time.After(20 * time.Millisecond):
	}
	if err := task.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
}

func TestTaskFailureEndsIt(t *testing.T) {
	task := Task("join", "joining", func(context.Context, Progress) error { return errors.New("token refused") })
	if err := task.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-task.Exited()
	if err := task.Stop(); err == nil || err.Error() != "token refused" {
		t.Fatalf("want the task's error, got %v", err)
	}
}

func TestGroupStartsMembersBuiltAtStartAndStopsThemInReverse(t *testing.T) {
	var mu sync.Mutex
	var events []string
	record := func(e string) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, e)
	}
	member := func(name string) Component {
		return NewFunc(name, func(ctx context.Context) error {
			record("start " + name)
			<-ctx.Done()
			record("stop " + name)
			return nil
		}, nil)
	}
	built := false
	g := Group("node add-ons", func() ([]Component, error) {
		built = true
		return []Component{member("a"), member("b")}, nil
	})
	if built {
		t.Fatal("members built before the group started")
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for g.Ready(context.Background()) != nil || len(snapshot(&mu, &events)) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("group not ready: %v", g.Ready(context.Background()))
		}
		time.Sleep(time.Millisecond)
	}
	if err := g.Stop(); err != nil {
		t.Fatal(err)
	}
	<-g.Exited()
	got := snapshot(&mu, &events)
	if want := "stop b"; got[len(got)-2] != want || got[len(got)-1] != "stop a" {
		t.Errorf("stop order %v, want b before a", got)
	}
}

func TestGroupExitsWhenAMemberFails(t *testing.T) {
	g := Group("g", func() ([]Component, error) {
		return []Component{NewFunc("broken", func(context.Context) error { return errors.New("boom") }, nil)}, nil
	})
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-g.Exited():
	case <-time.After(5 * time.Second):
		t.Fatal("the group did not exit with its member")
	}
	if err := g.Stop(); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("Stop: %v, want the member's failure", err)
	}
	empty := Group("empty", func() ([]Component, error) { return nil, nil })
	if err := empty.Start(context.Background()); err != nil || empty.Ready(context.Background()) != nil {
		t.Error("an empty group is not ready at once")
	}
}

func snapshot(mu *sync.Mutex, events *[]string) []string {
	mu.Lock()
	defer mu.Unlock()
	return append([]string(nil), *events...)
}

func TestProcessStart(t *testing.T) {
	start := processStart()
	// The test binary was executed moments ago; /proc counts in 10 ms ticks.
	if age := time.Since(start); age < 0 || age > 10*time.Minute {
		t.Fatalf("process start %s is %s ago", start, age)
	}
}
