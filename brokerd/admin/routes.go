package admin

import (
	"context"
	_ "embed"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/metadata"

	imetrics "github.com/raftq/raftq/internal/metrics"
)

//go:embed openapi.yaml
var openAPI []byte

func (s *Server) routes() http.Handler {
	r := chi.NewRouter()
	// Cross-site writes are refused after authentication, so a refused
	// admin write is still audited, and with auth off too.
	r.Use(s.requestIDs, s.recoverer, s.httpm.middleware, s.authenticate, refuseCrossSite)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		err := newErr(http.StatusNotFound, CodeNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
		if strings.HasPrefix(r.URL.Path, "/ui/") && r.Method == http.MethodGet && s.cfg.Node != nil {
			s.renderError(w, r, err) // a mistyped dashboard link gets a page
			return
		}
		writeError(w, r, err)
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, newErr(http.StatusMethodNotAllowed, CodeMethodNotAllowed, r.Method+" is not allowed on "+r.URL.Path))
	})

	r.Get("/", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ui/", http.StatusFound) })
	r.Get("/healthz", s.healthz)
	r.Get("/readyz", s.readyz)
	r.Method(http.MethodGet, "/metrics", promhttp.HandlerFor(s.cfg.Metrics, promhttp.HandlerOpts{}))
	r.Get("/openapi.yaml", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(openAPI)
	})
	r.Mount("/debug", middleware.Profiler())

	// Streams: no request timeout, their own body limit.
	r.Get("/v1/cluster/snapshot", s.snapshot)
	r.Post("/v1/cluster/restore", s.restore)

	r.Group(func(r chi.Router) {
		r.Use(s.timeout)
		r.Get("/v1/cluster", s.getCluster)
		r.Get("/v1/cluster/health", s.getHealth)
		r.Post("/v1/cluster/members", s.addMember)
		r.Delete("/v1/cluster/members/{node}", s.removeMember)
		r.Post("/v1/cluster/transfer-leadership", s.transferLeadership)

		r.Get("/v1/queues", s.listQueues)
		r.Get("/v1/queues/{queue}", s.getQueue)
		r.Post("/v1/queues/{queue}/pause", s.pauseQueue)
		r.Post("/v1/queues/{queue}/resume", s.resumeQueue)
		r.Get("/v1/queues/{queue}/jobs", s.listJobs)

		r.Get("/v1/queues/{queue}/dead", s.listDead)
		r.Get("/v1/queues/{queue}/dead/{id}", s.getDead)
		r.Post("/v1/queues/{queue}/dead/redrive", s.redrive)
		r.Post("/v1/queues/{queue}/dead/purge", s.purgeDead)

		r.Get("/v1/jobs/{id}", s.getJob)
		r.Get("/v1/jobs/{id}/attempts", s.getAttempts)
		r.Post("/v1/jobs/{id}/cancel", s.cancelJob)

		r.Get("/v1/schedules", s.listSchedules)
		r.Get("/v1/schedules/{name}", s.getSchedule)

		s.uiRoutes(r)
	})
	r.Handle("/ui/static/*", http.StripPrefix("/ui/", http.FileServerFS(staticFS)))
	return r
}

// requestIDs gives every request an id (the caller's X-Request-Id when
// sane), echoes it in the response header and passes it on to the node's
// gRPC API as metadata.
func (s *Server) requestIDs(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		if !saneID(id) {
			id = newRequestID()
		}
		w.Header().Set("X-Request-Id", id)
		r.Header.Set("X-Request-Id", id) // what the audit line records
		ctx := context.WithValue(r.Context(), requestIDKey, id)
		ctx = metadata.AppendToOutgoingContext(ctx, "x-request-id", id)
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// recoverer turns a handler panic into a logged 500 in the error shape.
func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("admin handler panic", "path", r.URL.Path, "request_id", requestID(r.Context()), "panic", v)
				writeError(w, r, newErr(http.StatusInternalServerError, CodeInternal, "internal error"))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// timeout bounds a request's work (the gRPC calls it makes).
func (s *Server) timeout(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
		defer cancel()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// httpMetrics counts admin requests by route pattern (never the raw path,
// which would make a series per job id) and measures their latency.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newHTTPMetrics() *httpMetrics {
	return &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "raftq", Subsystem: "admin_http", Name: "requests_total",
			Help: "Admin HTTP requests by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "raftq", Subsystem: "admin_http", Name: "request_duration_seconds",
			Help: "Admin HTTP request latency by route pattern and method.", Buckets: imetrics.LatencyBuckets,
		}, []string{"route", "method"}),
	}
}

func (m *httpMetrics) Describe(ch chan<- *prometheus.Desc) {
	m.requests.Describe(ch)
	m.duration.Describe(ch)
}

func (m *httpMetrics) Collect(ch chan<- prometheus.Metric) {
	m.requests.Collect(ch)
	m.duration.Collect(ch)
}

func (m *httpMetrics) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		next.ServeHTTP(ww, r)
		route := "unmatched"
		if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
			route = rc.RoutePattern()
		}
		code := ww.Status()
		if code == 0 {
			code = http.StatusOK
		}
		m.requests.WithLabelValues(route, r.Method, strconv.Itoa(code)).Inc()
		m.duration.WithLabelValues(route, r.Method).Observe(time.Since(start).Seconds())
	})
}
