package containerd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	client "github.com/containerd/containerd/v2/client"

	"github.com/k1s-io/k1s/internal/fileutil"
)

// Process is containerd running as a child process of k1s (argv[0] "containerd"). Its shims
// are separate programs from the payload and outlive it, so pods keep running across restarts.
type Process struct {
	cfg     Config
	logFile string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
	client *client.Client
}

// NewProcess returns the containerd component for cfg.
func NewProcess(cfg Config) *Process {
	return &Process{cfg: cfg, logFile: cfg.LogFile, exited: make(chan struct{})}
}

func (p *Process) Name() string { return "containerd" }

// Start writes the configuration and starts containerd.
func (p *Process) Start(context.Context) error {
	data, err := p.cfg.Render()
	if err != nil {
		return err
	}
	for _, dir := range []string{p.cfg.Root, p.cfg.State, filepath.Dir(p.cfg.Socket), p.cfg.OptDir, p.cfg.CNIConfDir} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("creating %s: %w", dir, err)
		}
	}
	configFile := p.cfg.ConfigFile
	if err := fileutil.WriteAtomic(configFile, data, 0o600); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("locating the k1s binary: %w", err)
	}
	logFile, err := os.OpenFile(p.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("opening containerd log: %w", err)
	}
	cmd := &exec.Cmd{
		Path:   self,
		Args:   []string{"containerd", "--config", configFile, "--log-level", "info"},
		Stdout: logFile,
		Stderr: logFile,
		Env:    append(os.Environ(), "PATH="+p.cfg.BinDir+":"+os.Getenv("PATH")),
		// containerd ends with k1s even when k1s is killed or gave up waiting for it (Stop
		// sends SIGTERM first); its shims do not.
		SysProcAttr: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true},
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("starting containerd: %w", err)
	}
	p.mu.Lock()
	p.cmd = cmd
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		logFile.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.exited)
	}()
	return nil
}

// Ready connects to containerd and asks for its version.
func (p *Process) Ready(ctx context.Context) error {
	c, err := p.Client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := c.Version(ctx); err != nil {
		return fmt.Errorf("containerd is not serving on %s yet (log: %s)", p.cfg.Socket, p.logFile)
	}
	return nil
}

// Client returns a client of this containerd, connecting on first use.
func (p *Process) Client() (*client.Client, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.client != nil {
		return p.client, nil
	}
	if _, err := os.Stat(p.cfg.Socket); err != nil {
		return nil, fmt.Errorf("containerd socket %s does not exist yet", p.cfg.Socket)
	}
	c, err := client.New(p.cfg.Socket, client.WithDefaultNamespace("k8s.io"), client.WithTimeout(2*time.Second))
	if err != nil {
		return nil, fmt.Errorf("connecting to containerd: %w", err)
	}
	p.client = c
	return c, nil
}

func (p *Process) Exited() <-chan struct{} { return p.exited }

// Stop asks containerd to stop and kills it if it does not within 10 s.
func (p *Process) Stop() error {
	p.mu.Lock()
	cmd, c := p.cmd, p.client
	p.client = nil
	p.mu.Unlock()
	if c != nil {
		c.Close()
	}
	if cmd == nil {
		return nil
	}
	select {
	case <-p.exited:
		return p.exitErr()
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return nil
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-p.exited
		return errors.New("containerd did not stop within 10 s of SIGTERM and was killed")
	}
}

// exitErr says why containerd exited on its own.
func (p *Process) exitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return fmt.Errorf("containerd exited: %w (see %s)", p.err, p.logFile)
	}
	return fmt.Errorf("containerd exited (see %s)", p.logFile)
}
