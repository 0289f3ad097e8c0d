package auth

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// AuditMessage is the message of every audit line, so they can be picked
// out of a mixed stream ("msg":"audit"). Each line names the principal, the
// action (gRPC method or HTTP route), its target, the caller's address,
// the request id, and the outcome.
const AuditMessage = "audit"

// RelayedKey is the metadata a node sets on a call it makes on behalf of
// a caller it has already audited (the admin HTTP API calling its node's
// gRPC API). Like a follower's forwarded calls ("raftq-forwarded"), such a
// call is not audited again when it comes over a verified node
// certificate: one admin action, one audit line, written where the action
// entered the cluster (with the caller's own address).
const RelayedKey = "raftq-audited"

// forwardedKey is brokerd's mark on a call a follower forwarded to its
// leader (see brokerd/forward.go).
const forwardedKey = "raftq-forwarded"

// Audit line outcomes.
const (
	OutcomeOK      = "ok"      // the action ran and succeeded
	OutcomeFailed  = "failed"  // the action ran (or was tried) and failed
	OutcomeRefused = "refused" // authentication or authorization refused it
)

// AuditLimits bound how fast refusals are written, so a flood of bad
// tokens cannot fill a disk. Admin actions that passed authorization are
// always written.
type AuditLimits struct {
	// RefusalsPerSec is the sustained rate of refusal lines (default 10).
	RefusalsPerSec float64
	// RefusalBurst is how many may come at once (default 100).
	RefusalBurst int
	// SummaryEvery is how long after the first suppressed line a summary
	// line counting the suppressed ones is written (default 1s).
	SummaryEvery time.Duration
}

// AuditLog is an audit sink: JSON lines (time, msg "audit", principal,
// method or http, target, outcome, code, peer, request id), written
// whatever the daemon's log level. It is safe for concurrent use.
type AuditLog struct {
	h    slog.Handler
	core *auditCore
}

// auditCore is what views made by With share: the writer's closer, the
// refusal limiter and the suppressed count.
type auditCore struct {
	closer io.Closer
	lim    *rate.Limiter
	every  time.Duration
	h      slog.Handler // summary lines, without a view's attributes

	mu         sync.Mutex
	suppressed int
	timer      *time.Timer
	closed     bool
}

// NewAuditLog writes audit lines to w (closed by Close when it is an
// io.Closer other than os.Stdout or os.Stderr).
func NewAuditLog(w io.Writer, l AuditLimits) *AuditLog {
	if l.RefusalsPerSec <= 0 {
		l.RefusalsPerSec = 10
	}
	if l.RefusalBurst <= 0 {
		l.RefusalBurst = 100
	}
	if l.SummaryEvery <= 0 {
		l.SummaryEvery = time.Second
	}
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{
		// No level: an audit line is not a log record that a level filters.
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.LevelKey {
				return slog.Attr{}
			}
			return a
		},
	})
	c := &auditCore{lim: rate.NewLimiter(rate.Limit(l.RefusalsPerSec), l.RefusalBurst), every: l.SummaryEvery, h: h}
	if cl, ok := w.(io.Closer); ok && w != os.Stdout && w != os.Stderr {
		c.closer = cl
	}
	return &AuditLog{h: h, core: c}
}

// OpenAuditLog opens the audit file path for appending (created 0600), or
// standard error for "" and "-".
func OpenAuditLog(path string, l AuditLimits) (*AuditLog, error) {
	if path == "" || path == "-" {
		return NewAuditLog(os.Stderr, l), nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	return NewAuditLog(f, l), nil
}

// With returns a view of the log whose lines also carry attrs (a node's
// id); it shares the file and the refusal budget.
func (l *AuditLog) With(attrs ...slog.Attr) *AuditLog {
	return &AuditLog{h: l.h.WithAttrs(attrs), core: l.core}
}

// Close writes the summary of lines suppressed so far and closes the file.
func (l *AuditLog) Close() error {
	c := l.core
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	if c.timer != nil {
		c.timer.Stop()
	}
	c.summaryLocked()
	if c.closer != nil {
		return c.closer.Close()
	}
	return nil
}

// write writes one line; a refusal takes a token from the refusal budget
// first and is counted instead of written when there is none.
func (l *AuditLog) write(ctx context.Context, refusal bool, attrs []slog.Attr) {
	c := l.core
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	if refusal && !c.lim.Allow() {
		c.suppressed++
		if c.timer == nil {
			c.timer = time.AfterFunc(c.every, c.flush)
		}
		return
	}
	r := slog.NewRecord(time.Now(), slog.LevelInfo, AuditMessage, 0)
	r.AddAttrs(attrs...)
	_ = l.h.Handle(ctx, r)
}

// flush writes the summary line when lines were suppressed.
func (c *auditCore) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.timer = nil
	if !c.closed {
		c.summaryLocked()
	}
}

func (c *auditCore) summaryLocked() {
	if c.suppressed == 0 {
		return
	}
	r := slog.NewRecord(time.Now(), slog.LevelInfo, AuditMessage, 0)
	r.AddAttrs(slog.Int("suppressed", c.suppressed),
		slog.String("note", strconv.Itoa(c.suppressed)+" refusal lines suppressed (over audit.refusals_per_sec)"))
	_ = c.h.Handle(context.Background(), r)
	c.suppressed = 0
}

// relayed reports whether a call was forwarded or relayed by a verified
// node on behalf of a caller, which that node audited. A node's own calls
// (its principal is the node: announcing itself with Join, leaving with
// Remove) are audited where they arrive.
func (a *Authorizer) relayed(ctx context.Context, p *Principal) bool {
	if p != nil && p.Has(RoleNode) {
		return false
	}
	md, _ := metadata.FromIncomingContext(ctx)
	if len(md.Get(forwardedKey)) == 0 && len(md.Get(RelayedKey)) == 0 {
		return false
	}
	return a.PeerIsNode(ctx)
}

// auditCall writes the audit line of one gRPC call (err nil: it
// succeeded; took is zero for a call refused before it ran).
func (a *Authorizer) auditCall(ctx context.Context, p *Principal, method string, req any, err error, took time.Duration) {
	if a.relayed(ctx, p) {
		return
	}
	a.writeCall(ctx, p, method, req, err, took)
}

// RefusedItem audits the refusal of one item of a call that is checked
// item by item in its handler (a batch settle's job, an EnqueueStream
// job): a refusal line like a refused call's, rate limited with them.
// Written even on a call a follower forwarded: the follower checked the
// call's role only, so it could not have audited the item.
func (a *Authorizer) RefusedItem(ctx context.Context, p *Principal, method string, item any, err error) {
	if a == nil || !IsAuthError(err) {
		return
	}
	a.writeCall(ctx, p, method, item, err, 0)
}

func (a *Authorizer) writeCall(ctx context.Context, p *Principal, method string, req any, err error, took time.Duration) {
	refusal := IsAuthError(err)
	attrs := []slog.Attr{
		slog.String("principal", name(p)),
		slog.String("method", method),
		slog.String("outcome", outcome(err)),
		slog.String("code", code(err)),
	}
	if pr, ok := peer.FromContext(ctx); ok && pr.Addr != nil {
		attrs = append(attrs, slog.String("peer", pr.Addr.String()))
	}
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("x-request-id"); len(v) == 1 && len(v[0]) <= 128 {
		attrs = append(attrs, slog.String("request_id", v[0]))
	}
	if v := md.Get(forwardedKey); len(v) == 1 && len(v[0]) <= 128 {
		attrs = append(attrs, slog.String("forwarded_by", v[0]))
	}
	attrs = append(attrs, target(req)...)
	if err != nil {
		attrs = append(attrs, slog.String("err", err.Error()))
	}
	if took > 0 {
		attrs = append(attrs, slog.Duration("took", took))
	}
	a.audit.write(ctx, refusal, attrs)
}

// refused records a refused call: one audit line (rate limited with the
// other refusals), whatever the method.
func (a *Authorizer) refused(ctx context.Context, p *Principal, method string, req any, err error) {
	a.auditCall(ctx, p, method, req, err, 0)
}

// AuditHTTP writes the audit line of an admin HTTP request: the route
// pattern (never a raw path with ids; path names the target), status.
// err is the refusal when authentication or authorization refused the
// request (such lines are rate limited), else nil.
func (a *Authorizer) AuditHTTP(r *http.Request, p *Principal, route string, status int, err error) {
	if a == nil {
		return
	}
	out := OutcomeOK
	switch {
	case err != nil:
		out = OutcomeRefused
	case status >= 400:
		out = OutcomeFailed
	}
	attrs := []slog.Attr{
		slog.String("principal", name(p)),
		slog.String("http", r.Method+" "+route),
		slog.String("path", r.URL.Path),
		slog.String("outcome", out),
		slog.String("status", strconv.Itoa(status)),
		slog.String("peer", r.RemoteAddr),
	}
	if id := r.Header.Get("X-Request-Id"); id != "" && len(id) <= 128 {
		attrs = append(attrs, slog.String("request_id", id))
	}
	if err != nil {
		attrs = append(attrs, slog.String("err", err.Error()))
	}
	a.audit.write(r.Context(), err != nil, attrs)
}

func outcome(err error) string {
	switch {
	case err == nil:
		return OutcomeOK
	case IsAuthError(err):
		return OutcomeRefused
	}
	return OutcomeFailed
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
	case *raftqv1.PutScheduleRequest:
		return []slog.Attr{slog.String("schedule", r.GetSchedule().GetName()), slog.String("queue", r.GetSchedule().GetJob().GetQueue())}
	case *raftqv1.PauseScheduleRequest:
		return []slog.Attr{slog.String("schedule", r.GetName())}
	case *raftqv1.ResumeScheduleRequest:
		return []slog.Attr{slog.String("schedule", r.GetName())}
	case *raftqv1.DeleteScheduleRequest:
		return []slog.Attr{slog.String("schedule", r.GetName())}
	case *raftqv1.TransferLeadershipRequest:
		return []slog.Attr{slog.String("node_id", r.GetNodeId())}
	// Items of batch settles and of EnqueueStream (RefusedItem).
	case *raftqv1.AckRequest:
		return []slog.Attr{slog.String("job_id", r.GetJobId())}
	case *raftqv1.NackRequest:
		return []slog.Attr{slog.String("job_id", r.GetJobId())}
	case *raftqv1.ExtendLeaseRequest:
		return []slog.Attr{slog.String("job_id", r.GetJobId())}
	case *raftqv1.JobSpec:
		return []slog.Attr{slog.String("queue", r.GetQueue())}
	}
	return nil
}
