package service

import (
	"context"
	"time"

	"github.com/go-kit/kit/endpoint"
	kitprometheus "github.com/go-kit/kit/metrics/prometheus"
	"github.com/go-kit/kit/ratelimit"
	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/raftq/raftq/internal/auth"
	"github.com/raftq/raftq/svcd/store"
)

// Endpoint requests and responses. Transports decode their wire format into
// the request types and encode the response types.

// StoreResultRequest asks to store one result.
type StoreResultRequest struct{ Result store.Result }

// StoreResultResponse is the outcome and the stored result (no output).
type StoreResultResponse struct{ Reply store.StoreReply }

// GetResultRequest names the job to read.
type GetResultRequest struct{ JobID string }

// GetResultResponse carries the job's result with its output.
type GetResultResponse struct{ Result store.Result }

// ListResultsRequest asks for one page of results.
type ListResultsRequest struct{ ListRequest }

// ListResultsResponse is one page.
type ListResultsResponse struct{ ListReply }

// ListAttemptsRequest names the job whose history to read.
type ListAttemptsRequest struct{ JobID string }

// ListAttemptsResponse is the job's history, oldest token first.
type ListAttemptsResponse struct{ Attempts []store.Attempt }

// Endpoints are the service's operations as Go kit endpoints, already
// wrapped in the middlewares; both transports serve the same ones, so logs,
// metrics and rate limits are the same whatever the client speaks.
type Endpoints struct {
	StoreResult  endpoint.Endpoint
	GetResult    endpoint.Endpoint
	ListResults  endpoint.Endpoint
	ListAttempts endpoint.Endpoint
}

// Options configures the middlewares. Zero fields disable the middleware.
type Options struct {
	Logger  log.Logger
	Metrics *Metrics
	// Limiter rejects requests over the rate (ratelimit.ErrLimited); e.g.
	// rate.NewLimiter from golang.org/x/time/rate. Shared by all endpoints.
	Limiter ratelimit.Allower
	// Auth, when set, authorizes every call against the principal its
	// transport authenticated (AuthorizeMiddleware): one place for gRPC
	// and HTTP.
	Auth *auth.Authorizer
}

// MakeEndpoints builds the endpoints over svc. Middlewares, outermost first:
// instrumentation (counts everything, rejected requests too), logging,
// authorization, rate limiting, then the service.
func MakeEndpoints(svc Service, o Options) Endpoints {
	wrap := func(name string, e endpoint.Endpoint) endpoint.Endpoint {
		if o.Limiter != nil {
			e = ratelimit.NewErroringLimiter(o.Limiter)(e)
		}
		if o.Auth != nil {
			e = AuthorizeMiddleware(o.Auth)(e)
		}
		if o.Logger != nil {
			e = LoggingMiddleware(log.With(o.Logger, "method", name))(e)
		}
		if o.Metrics != nil {
			e = o.Metrics.Middleware(name)(e)
		}
		return e
	}
	return Endpoints{
		StoreResult: wrap("StoreResult", func(ctx context.Context, req any) (any, error) {
			r, err := svc.StoreResult(ctx, req.(StoreResultRequest).Result)
			if err != nil {
				return nil, err
			}
			return StoreResultResponse{Reply: r}, nil
		}),
		GetResult: wrap("GetResult", func(ctx context.Context, req any) (any, error) {
			r, err := svc.GetResult(ctx, req.(GetResultRequest).JobID)
			if err != nil {
				return nil, err
			}
			return GetResultResponse{Result: r}, nil
		}),
		ListResults: wrap("ListResults", func(ctx context.Context, req any) (any, error) {
			r, err := svc.ListResults(ctx, req.(ListResultsRequest).ListRequest)
			if err != nil {
				return nil, err
			}
			return ListResultsResponse{ListReply: r}, nil
		}),
		ListAttempts: wrap("ListAttempts", func(ctx context.Context, req any) (any, error) {
			a, err := svc.ListAttempts(ctx, req.(ListAttemptsRequest).JobID)
			if err != nil {
				return nil, err
			}
			return ListAttemptsResponse{Attempts: a}, nil
		}),
	}
}

// LoggingMiddleware logs each call with its duration and kind of outcome.
// Successful and client-error calls log at debug (a busy svcd serves
// thousands a second); server-side failures at error.
func LoggingMiddleware(logger log.Logger) endpoint.Middleware {
	return func(next endpoint.Endpoint) endpoint.Endpoint {
		return func(ctx context.Context, req any) (resp any, err error) {
			defer func(begin time.Time) {
				kv := []any{"took", time.Since(begin), "kind", KindOf(err)}
				switch r := req.(type) {
				case StoreResultRequest:
					kv = append(kv, "job_id", r.Result.JobID, "lease_token", r.Result.LeaseToken, "status", r.Result.Status)
				case GetResultRequest:
					kv = append(kv, "job_id", r.JobID)
				case ListAttemptsRequest:
					kv = append(kv, "job_id", r.JobID)
				}
				if sr, ok := resp.(StoreResultResponse); ok {
					kv = append(kv, "outcome", sr.Reply.Outcome)
				}
				lg := level.Debug(logger)
				switch KindOf(err) {
				case KindInternal, KindUnavailable:
					lg = level.Error(logger)
				}
				if err != nil {
					kv = append(kv, "err", err)
				}
				_ = lg.Log(kv...)
			}(time.Now())
			return next(ctx, req)
		}
	}
}

// Metrics are the service's Prometheus instruments, through Go kit's
// metrics interfaces.
type Metrics struct {
	requests *kitprometheus.Counter
	duration *kitprometheus.Histogram
	outcomes *kitprometheus.Counter
}

// NewMetrics creates the instruments and registers them with reg (a
// registry per server, so several servers can live in one test process).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	req := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "svcd", Name: "requests_total",
		Help: "Requests by method and kind of outcome (ok, invalid_argument, stale_token, ...).",
	}, []string{"method", "kind"})
	dur := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "svcd", Name: "request_duration_seconds",
		Help:    "Request latency by method and kind of outcome.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
	}, []string{"method", "kind"})
	out := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "svcd", Name: "store_outcomes_total",
		Help: "StoreResult outcomes: stored, duplicate, already_succeeded, stale.",
	}, []string{"outcome"})
	reg.MustRegister(req, dur, out)
	return &Metrics{
		requests: kitprometheus.NewCounter(req),
		duration: kitprometheus.NewHistogram(dur),
		outcomes: kitprometheus.NewCounter(out),
	}
}

// Middleware instruments one endpoint.
func (m *Metrics) Middleware(method string) endpoint.Middleware {
	return func(next endpoint.Endpoint) endpoint.Endpoint {
		return func(ctx context.Context, req any) (resp any, err error) {
			defer func(begin time.Time) {
				kind := string(KindOf(err))
				m.requests.With("method", method, "kind", kind).Add(1)
				m.duration.With("method", method, "kind", kind).Observe(time.Since(begin).Seconds())
				if sr, ok := resp.(StoreResultResponse); ok {
					m.outcomes.With("outcome", string(sr.Reply.Outcome)).Add(1)
				} else if KindOf(err) == KindStaleToken {
					m.outcomes.With("outcome", string(store.OutcomeStale)).Add(1)
				}
			}(time.Now())
			return next(ctx, req)
		}
	}
}

// AuthorizeMiddleware checks each call against the principal in its
// context (put there by the transport's authentication): workers store
// results of their queues' jobs, producers and workers read results of
// their queues (a listing without a queue needs every queue), admins do
// anything. A job's queue is the one its stored result names, so a worker
// cannot overwrite a result of another queue by claiming its own. A
// refused call reaches neither the rate limiter nor the database writes.
func AuthorizeMiddleware(a *auth.Authorizer) endpoint.Middleware {
	return func(next endpoint.Endpoint) endpoint.Endpoint {
		return func(ctx context.Context, req any) (any, error) {
			p, ok := auth.FromContext(ctx)
			if !ok {
				return nil, &auth.Error{Kind: auth.ErrUnauthenticated, Msg: "missing bearer token"}
			}
			acc := auth.Access{Roles: auth.RoleProducer | auth.RoleWorker}
			switch r := req.(type) {
			case StoreResultRequest:
				acc.Roles = auth.RoleWorker
				if r.Result.Queue != "" { // an empty queue is the validator's to refuse
					acc.Queues = []string{r.Result.Queue}
				}
				acc.Jobs = []string{r.Result.JobID}
			case GetResultRequest:
				acc.Jobs = []string{r.JobID}
			case ListAttemptsRequest:
				acc.Jobs = []string{r.JobID}
			case ListResultsRequest:
				if r.Queue == "" {
					acc.AllQueues = true
				} else {
					acc.Queues = []string{r.Queue}
				}
			default:
				acc.Roles = auth.RoleAdmin
			}
			if err := a.Check(ctx, p, acc); err != nil {
				return nil, err
			}
			return next(ctx, req)
		}
	}
}
