package metrics

import (
	"context"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// GRPCServer measures every RPC a gRPC server handles: how many finished,
// with which status code (rate and errors), and how long they took
// (latency histogram). Install it with grpc.ChainUnaryInterceptor and
// grpc.ChainStreamInterceptor; it is a prometheus.Collector.
type GRPCServer struct {
	handled  *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inflight *prometheus.GaugeVec
}

// LatencyBuckets are the gRPC latency histogram's buckets, in seconds:
// 100 µs to ~52 s in powers of two. Raft writes cost about a millisecond
// and long polls last up to minutes, so the range is wide.
var LatencyBuckets = prometheus.ExponentialBuckets(0.0001, 2, 20)

// NewGRPCServer creates the instruments, named <namespace>_grpc_server_*.
// Register the result with a registry.
func NewGRPCServer(namespace string) *GRPCServer {
	return &GRPCServer{
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "grpc_server", Name: "handled_total",
			Help: "RPCs completed on the server, by service, method and gRPC status code (code != OK are errors).",
		}, []string{"grpc_service", "grpc_method", "grpc_code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "grpc_server", Name: "handling_seconds",
			Help:    "Time from receiving an RPC to sending its answer, by service and method.",
			Buckets: LatencyBuckets,
		}, []string{"grpc_service", "grpc_method"}),
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "grpc_server", Name: "in_flight_requests",
			Help: "RPCs being handled right now, by service and method (parked long polls count).",
		}, []string{"grpc_service", "grpc_method"}),
	}
}

// Describe implements prometheus.Collector.
func (m *GRPCServer) Describe(ch chan<- *prometheus.Desc) {
	m.handled.Describe(ch)
	m.duration.Describe(ch)
	m.inflight.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *GRPCServer) Collect(ch chan<- prometheus.Metric) {
	m.handled.Collect(ch)
	m.duration.Collect(ch)
	m.inflight.Collect(ch)
}

// InitializeMetrics creates the OK series of every method srv serves at
// zero, so rates and dashboards see a method before its first call.
// Call it after every service is registered.
func (m *GRPCServer) InitializeMetrics(srv *grpc.Server) {
	for svc, info := range srv.GetServiceInfo() {
		for _, mi := range info.Methods {
			m.handled.WithLabelValues(svc, mi.Name, "OK")
			m.duration.WithLabelValues(svc, mi.Name)
			m.inflight.WithLabelValues(svc, mi.Name)
		}
	}
}

// splitMethod turns "/pkg.Service/Method" into its two parts.
func splitMethod(full string) (service, method string) {
	full = strings.TrimPrefix(full, "/")
	if i := strings.LastIndex(full, "/"); i >= 0 {
		return full[:i], full[i+1:]
	}
	return "unknown", full
}

func (m *GRPCServer) observe(fullMethod string, start time.Time, err error) {
	svc, meth := splitMethod(fullMethod)
	m.handled.WithLabelValues(svc, meth, status.Code(err).String()).Inc()
	m.duration.WithLabelValues(svc, meth).Observe(time.Since(start).Seconds())
}

// UnaryServerInterceptor measures unary RPCs.
func (m *GRPCServer) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		g := m.inflight.WithLabelValues(splitMethod(info.FullMethod))
		g.Inc()
		resp, err := handler(ctx, req)
		g.Dec()
		m.observe(info.FullMethod, start, err)
		return resp, err
	}
}

// StreamServerInterceptor measures streaming RPCs (the whole stream is one
// observation).
func (m *GRPCServer) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		g := m.inflight.WithLabelValues(splitMethod(info.FullMethod))
		g.Inc()
		err := handler(srv, ss)
		g.Dec()
		m.observe(info.FullMethod, start, err)
		return err
	}
}
