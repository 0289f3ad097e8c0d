package auth

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// AuditMessage is the message of every audit line, so they can be picked
// out of a node's log ("msg=audit"). Each line names the principal, the
// action (gRPC method or HTTP route), its target, the caller's address,
// the request id, and the outcome.
const AuditMessage = "audit"

// auditCall writes the audit line of one admin gRPC call (err nil: it
// succeeded; took is zero for a call refused before it ran).
func (a *Authorizer) auditCall(ctx context.Context, p *Principal, method string, req any, err error, took time.Duration) {
	attrs := []slog.Attr{
		slog.String("principal", name(p)),
		slog.String("method", method),
		slog.String("code", code(err)),
	}
	if pr, ok := peer.FromContext(ctx); ok && pr.Addr != nil {
		attrs = append(attrs, slog.String("peer", pr.Addr.String()))
	}
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("x-request-id"); len(v) == 1 {
		attrs = append(attrs, slog.String("request_id", v[0]))
	}
	if v := md.Get("raftq-forwarded"); len(v) == 1 {
		attrs = append(attrs, slog.String("forwarded_by", v[0]))
	}
	attrs = append(attrs, target(req)...)
	if err != nil {
		attrs = append(attrs, slog.String("err", err.Error()))
	}
	if took > 0 {
		attrs = append(attrs, slog.Duration("took", took))
	}
	a.log.LogAttrs(ctx, slog.LevelInfo, AuditMessage, attrs...)
}

// refused records a refusal: an audit line for audited methods, a debug
// line for the rest (a misconfigured worker must not flood the log).
func (a *Authorizer) refused(ctx context.Context, r Rule, p *Principal, method string, req any, err error) {
	if r.Audit {
		a.auditCall(ctx, p, method, req, err, 0)
		return
	}
	a.log.Debug("auth refused", "principal", name(p), "method", method, "err", err)
}

// AuditHTTP writes the audit line of an admin HTTP request: the route
// pattern (never a raw path with ids, which the target names), status.
func (a *Authorizer) AuditHTTP(r *http.Request, p *Principal, route string, status int) {
	if a == nil {
		return
	}
	attrs := []slog.Attr{
		slog.String("principal", name(p)),
		slog.String("http", r.Method+" "+route),
		slog.String("path", r.URL.Path),
		slog.String("status", strconv.Itoa(status)),
		slog.String("peer", r.RemoteAddr),
	}
	if id := r.Header.Get("X-Request-Id"); id != "" && len(id) <= 128 {
		attrs = append(attrs, slog.String("request_id", id))
	}
	a.log.LogAttrs(r.Context(), slog.LevelInfo, AuditMessage, attrs...)
}

func name(p *Principal) string {
	if p == nil {
		return "(unauthenticated)"
	}
	return p.Name
}

// target names what an admin call acts on, without copying anything
// large into the log.
func target(req any) []slog.Attr {
	ids := func(v []string) slog.Attr { return slog.Int("job_ids", len(v)) }
	switch r := req.(type) {
	case *raftqv1.PauseQueueRequest:
		return []slog.Attr{slog.String("queue", r.GetQueue())}
	case *raftqv1.ResumeQueueRequest:
		return []slog.Attr{slog.String("queue", r.GetQueue())}
	case *raftqv1.RedriveRequest:
		return []slog.Attr{slog.String("queue", r.GetQueue()), ids(r.GetJobIds()), slog.Int("limit", int(r.GetLimit()))}
	case *raftqv1.PurgeDeadRequest:
		return []slog.Attr{slog.String("queue", r.GetQueue()), ids(r.GetJobIds()), slog.Int("limit", int(r.GetLimit()))}
	case *raftqv1.ListJobsRequest:
		return []slog.Attr{slog.String("queue", r.GetQueue()), slog.String("state", r.GetState().String())}
	case *raftqv1.JoinRequest:
		return []slog.Attr{slog.String("node_id", r.GetNodeId()), slog.String("raft_addr", r.GetRaftAddr()), slog.String("grpc_addr", r.GetGrpcAddr())}
	case *raftqv1.RemoveRequest:
		return []slog.Attr{slog.String("node_id", r.GetNodeId())}
	case *raftqv1.TransferLeadershipRequest:
		return []slog.Attr{slog.String("node_id", r.GetNodeId())}
	}
	return nil
}
