package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"google.golang.org/grpc"

	"github.com/raftq/raftq/internal/auth"
	"github.com/raftq/raftq/internal/limits"
	"github.com/raftq/raftq/internal/tlsutil"
	"github.com/raftq/raftq/svcd/store"
)

// security is svcd's TLS material and authorizer (each nil when off).
type security struct {
	tls        *tlsutil.Source
	clientAuth tls.ClientAuthType
	auth       *auth.Authorizer
}

func newSecurity(cfg Config, st *store.Store, lg log.Logger) (*security, error) {
	s := &security{clientAuth: tls.VerifyClientCertIfGiven}
	if cfg.RequireClientCert {
		s.clientAuth = tls.RequireAndVerifyClientCert
	}
	logger := slog.New(kitHandler{lg})
	if cfg.TLS.Enabled() {
		if cfg.TLS.Cert == "" {
			return nil, fmt.Errorf("tls: svcd needs its own certificate and key")
		}
		src, err := tlsutil.Load(cfg.TLS, logger)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		s.tls = src
	} else if cfg.RequireClientCert {
		return nil, fmt.Errorf("tls: a client certificate can only be required with TLS on")
	}
	ac := cfg.Auth
	if ac.Enabled() && s.tls == nil {
		return nil, fmt.Errorf("auth: needs TLS (tokens must not cross the network in clear)")
	}
	ac.Logger = logger
	ac.JobQueue = st.JobQueue
	a, err := auth.New(ac)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	s.auth = a
	return s, nil
}

// grpcOptions: TLS credentials, the auth tap and interceptors (who may
// call; the endpoints decide on which queues), and the transport limits.
func (s *security) grpcOptions() []grpc.ServerOption {
	opts := limits.GRPC{}.ServerOptions()
	if s.tls != nil {
		opts = append(opts, grpc.Creds(s.tls.ServerCredentials(s.clientAuth)))
	}
	return append(opts, s.auth.ServerOptions(auth.ResultsRules)...)
}

// kitHandler sends the auth and TLS packages' slog lines (reload
// failures, refusals at debug) to svcd's Go kit logger.
type kitHandler struct{ l log.Logger }

func (h kitHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h kitHandler) Handle(_ context.Context, r slog.Record) error {
	kv := []any{"msg", r.Message}
	r.Attrs(func(a slog.Attr) bool {
		kv = append(kv, a.Key, a.Value.String())
		return true
	})
	l := level.Info(h.l)
	switch {
	case r.Level >= slog.LevelError:
		l = level.Error(h.l)
	case r.Level >= slog.LevelWarn:
		l = level.Warn(h.l)
	case r.Level < slog.LevelInfo:
		l = level.Debug(h.l)
	}
	return l.Log(kv...)
}

func (h kitHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	kv := []any{}
	for _, a := range attrs {
		kv = append(kv, a.Key, a.Value.String())
	}
	return kitHandler{log.With(h.l, kv...)}
}

func (h kitHandler) WithGroup(string) slog.Handler { return h }
