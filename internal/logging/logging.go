// Package logging routes every upstream logger (klog, etcd's zap, Go's log package) into one
// logrus logger, so that k1s prints one stream with a `component` field on each line.
package logging

import (
	"flag"
	"fmt"
	"io"
	stdlog "log"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/go-logr/logr"
	"github.com/sirupsen/logrus"
	logsapi "k8s.io/component-base/logs/api/v1"
	"k8s.io/klog/v2"
)

// Options are the user's logging choices.
type Options struct {
	// Debug shows debug lines, including upstream info lines.
	Debug bool
	// Verbosity is klog's -v; above 0 upstream info lines are shown at info level.
	Verbosity int
	Output    io.Writer
}

// Logs is the process's logger.
type Logs struct {
	*logrus.Logger
	stopping atomic.Bool
}

// Stopping demotes upstream warnings and errors to debug lines: once k1s stops its
// components, their loops report every call cut short by the stop. It also disarms klog's
// Fatal (see Setup), and its dump of every goroutine's stack: the apiserver's post-start hooks
// call it when the stop cancels them before they are done.
func (l *Logs) Stopping() {
	l.stopping.Store(true)
	// With a logger set, this only keeps Fatal from writing the stacks to stderr.
	klog.LogToStderr(true)
}

// Setup configures the process-wide loggers and returns the root logger. It must be called
// once, before any upstream component is constructed: klog is a process-global.
func Setup(opts Options) (*Logs, error) {
	log := logrus.New()
	if opts.Output != nil {
		log.SetOutput(opts.Output)
	}
	log.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, TimestampFormat: "15:04:05.000"})
	log.SetLevel(logrus.InfoLevel)
	if opts.Debug {
		log.SetLevel(logrus.DebugLevel)
	}

	// Several upstream components apply their logging options; a second apply of the same
	// options must not fail (field notes §2).
	logsapi.ReapplyHandling = logsapi.ReapplyHandlingIgnoreUnchanged

	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	if err := fs.Set("v", strconv.Itoa(opts.Verbosity)); err != nil {
		return nil, fmt.Errorf("setting log verbosity %d: %w", opts.Verbosity, err)
	}
	// klog must not write its own files or stderr copy: everything goes through the sink.
	for name, value := range map[string]string{"logtostderr": "false", "alsologtostderr": "false", "stderrthreshold": "FATAL"} {
		if err := fs.Set(name, value); err != nil {
			return nil, fmt.Errorf("configuring klog flag %s: %w", name, err)
		}
	}
	logs := &Logs{Logger: log}
	klog.SetLogger(logr.New(&klogSink{log: log, verbosity: opts.Verbosity, stopping: &logs.stopping}))
	klog.SetOutput(io.Discard)
	// A Fatal while k1s stops (SIGTERM during the apiserver's start) would end the process in
	// the middle of its stop, with exit code 255: the goroutine that called it ends instead,
	// and the stop goes on. At other times Fatal exits as upstream expects.
	klog.OsExit = func(code int) {
		if logs.stopping.Load() {
			runtime.Goexit()
		}
		os.Exit(code)
	}
	stdlog.SetFlags(0)
	stdlog.SetOutput(stdlogWriter{log})
	return logs, nil
}

// stdlogWriter takes the lines of Go's log package: what HTTP servers without an error
// logger of their own print (the kubelet's, kube-proxy's), and slog's default logger (whose
// level stays in the message). They were raw lines on stderr before; info lines now, as Go's
// log package has no levels.
type stdlogWriter struct{ log *logrus.Logger }

// tlsHandshakeError starts the line net/http prints for every connection whose TLS handshake
// fails: a client without the CA, a scanner, or a kubelet asked for TLS before its serving
// certificate is issued. The apiserver logs these at -v 5; so does k1s, at debug.
const tlsHandshakeError = "http: TLS handshake error"

func (w stdlogWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	if strings.HasPrefix(line, tlsHandshakeError) {
		w.log.Debug(line)
	} else {
		w.log.Info(line)
	}
	return len(p), nil
}
