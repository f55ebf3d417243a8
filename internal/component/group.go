package component

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Group returns a component that, when it starts, builds its members with build (which may
// read what earlier components learned, such as the cluster's settings after the join) and
// starts them in order. It is ready when every member is; it exits when any member exits,
// and stops them in reverse order. An empty group is ready at once.
func Group(name string, build func() ([]Component, error)) Component {
	return &group{name: name, build: build, exited: make(chan struct{})}
}

type group struct {
	name  string
	build func() ([]Component, error)

	mu      sync.Mutex
	members []Component
	exited  chan struct{}
	once    sync.Once
}

func (g *group) Name() string { return g.name }

func (g *group) Start(ctx context.Context) error {
	members, err := g.build()
	if err != nil {
		return err
	}
	for _, m := range members {
		if err := m.Start(ctx); err != nil {
			g.stopMembers()
			return fmt.Errorf("%s: starting %s: %w", g.name, m.Name(), err)
		}
		g.mu.Lock()
		g.members = append(g.members, m)
		g.mu.Unlock()
		go func() {
			<-m.Exited()
			g.once.Do(func() { close(g.exited) })
		}()
	}
	return nil
}

func (g *group) Ready(ctx context.Context) error {
	g.mu.Lock()
	members := append([]Component(nil), g.members...)
	g.mu.Unlock()
	for _, m := range members {
		if err := m.Ready(ctx); err != nil {
			return fmt.Errorf("%s: %w", m.Name(), err)
		}
	}
	return nil
}

func (g *group) Exited() <-chan struct{} { return g.exited }

// Stop stops the members in reverse order and returns why any of them failed.
func (g *group) Stop() error {
	err := g.stopMembers()
	g.once.Do(func() { close(g.exited) })
	return err
}

func (g *group) stopMembers() error {
	g.mu.Lock()
	members := g.members
	g.members = nil
	g.mu.Unlock()
	var errs []error
	for i := len(members) - 1; i >= 0; i-- {
		if err := members[i].Stop(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", members[i].Name(), err))
		}
	}
	return errors.Join(errs...)
}
