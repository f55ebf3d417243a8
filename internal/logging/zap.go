package logging

import (
	"sync/atomic"

	"github.com/sirupsen/logrus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// NewZap returns a zap logger (etcd's logger) that writes to log with the given component field.
// Like klog's, zap's info lines are debug lines for k1s. Once stopping is set, every line is a
// debug line: a server being closed reports each closed listener as an error.
func NewZap(log *logrus.Logger, component string, stopping *atomic.Bool) *zap.Logger {
	return zap.New(&zapCore{log: log, fields: logrus.Fields{"component": component}, stopping: stopping})
}

type zapCore struct {
	log      *logrus.Logger
	fields   logrus.Fields
	stopping *atomic.Bool
}

func (c *zapCore) toLogrus(l zapcore.Level) logrus.Level {
	switch {
	case l <= zapcore.InfoLevel, c.stopping != nil && c.stopping.Load():
		return logrus.DebugLevel
	case l == zapcore.WarnLevel:
		return logrus.WarnLevel
	default:
		return logrus.ErrorLevel
	}
}

func (c *zapCore) Enabled(l zapcore.Level) bool { return c.log.IsLevelEnabled(c.toLogrus(l)) }

func (c *zapCore) With(fields []zapcore.Field) zapcore.Core {
	return &zapCore{log: c.log, fields: mergeZapFields(c.fields, fields), stopping: c.stopping}
}

func (c *zapCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *zapCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	all := mergeZapFields(c.fields, fields)
	level := c.toLogrus(e.Level)
	if level <= logrus.WarnLevel {
		component, _ := all["component"].(string)
		errText, _ := all["error"].(string)
		if isNoise(component, e.Message, errText) {
			level = logrus.DebugLevel
		}
	}
	c.log.WithFields(all).Log(level, e.Message)
	return nil
}

func (c *zapCore) Sync() error { return nil }

func mergeZapFields(base logrus.Fields, fields []zapcore.Field) logrus.Fields {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range fields {
		f.AddTo(enc)
	}
	out := make(logrus.Fields, len(base)+len(enc.Fields))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range enc.Fields {
		out[k] = v
	}
	return out
}
