package transport

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	kitgrpc "github.com/go-kit/kit/transport/grpc"
	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/raftq/raftq/internal/tracectx"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/svcd/service"
	"github.com/raftq/raftq/svcd/store"
	"go.opentelemetry.io/otel"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the proto codec we wrap
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// GRPCConfig sizes the gRPC server.
type GRPCConfig struct {
	// MaxOutputBytes is the service's output limit; the server accepts
	// messages somewhat larger so that an oversized output reaches
	// validation and gets INVALID_ARGUMENT, not a transport error.
	MaxOutputBytes int
	Logger         log.Logger
	// ServerOptions are added after the server's own: credentials, the
	// auth tap and interceptors, transport limits.
	ServerOptions []grpc.ServerOption
}

// NewGRPCServer returns a gRPC server with the Results service over eps and
// the standard health service hs registered.
func NewGRPCServer(eps service.Endpoints, hs *health.Server, cfg GRPCConfig) *grpc.Server {
	if cfg.MaxOutputBytes <= 0 {
		cfg.MaxOutputBytes = service.DefaultMaxOutputBytes
	}
	logger := cfg.Logger
	if logger == nil {
		logger = log.NewNopLogger()
	}
	codec := newLenientCodec()
	srv := grpc.NewServer(append([]grpc.ServerOption{
		grpc.ForceServerCodecV2(codec),
		grpc.MaxRecvMsgSize(cfg.MaxOutputBytes + 1<<20),
		grpc.ChainUnaryInterceptor(
			recoverInterceptor(logger),
			// A span per call, child of the worker's store-result span
			// when the call carries one; otel's global provider, set by
			// cmd/svcd when tracing is configured (a no-op otherwise).
			tracectx.UnaryServerInterceptor(otel.Tracer("github.com/raftq/raftq/svcd")),
			codec.unaryInterceptor,
			kitgrpc.Interceptor,
		),
		grpc.ChainStreamInterceptor(codec.streamInterceptor),
	}, cfg.ServerOptions...)...)
	raftqv1.RegisterResultsServer(srv, NewResultsServer(eps, logger))
	healthpb.RegisterHealthServer(srv, hs)
	// Reflection lets grpcurl and other generic clients list and call the
	// service without the .proto files (admins only under auth, as on
	// brokerd: the rules' default).
	reflection.Register(srv)
	return srv
}

// resultsServer binds the generated gRPC interface to Go kit handlers.
type resultsServer struct {
	raftqv1.UnimplementedResultsServer
	store, get, list, attempts kitgrpc.Handler
}

// NewResultsServer adapts the endpoints to raftqv1.ResultsServer.
func NewResultsServer(eps service.Endpoints, logger log.Logger) raftqv1.ResultsServer {
	opt := kitgrpc.ServerErrorHandler(debugErrors{logger})
	return &resultsServer{
		store:    kitgrpc.NewServer(eps.StoreResult, decodeStoreResult, encodeStoreResult, opt),
		get:      kitgrpc.NewServer(eps.GetResult, decodeGetResult, encodeGetResult, opt),
		list:     kitgrpc.NewServer(eps.ListResults, decodeListResults, encodeListResults, opt),
		attempts: kitgrpc.NewServer(eps.ListAttempts, decodeListAttempts, encodeListAttempts, opt),
	}
}

func serve[T any](h kitgrpc.Handler, ctx context.Context, req any) (T, error) {
	var zero T
	_, resp, err := h.ServeGRPC(ctx, req)
	if err != nil {
		return zero, grpcError(err)
	}
	return resp.(T), nil
}

// StoreResult serves raftq.v1.Results/StoreResult through the endpoint.
func (s *resultsServer) StoreResult(ctx context.Context, req *raftqv1.StoreResultRequest) (*raftqv1.StoreResultResponse, error) {
	return serve[*raftqv1.StoreResultResponse](s.store, ctx, req)
}

// GetResult serves raftq.v1.Results/GetResult through the endpoint.
func (s *resultsServer) GetResult(ctx context.Context, req *raftqv1.GetResultRequest) (*raftqv1.GetResultResponse, error) {
	return serve[*raftqv1.GetResultResponse](s.get, ctx, req)
}

// ListResults serves raftq.v1.Results/ListResults through the endpoint.
func (s *resultsServer) ListResults(ctx context.Context, req *raftqv1.ListResultsRequest) (*raftqv1.ListResultsResponse, error) {
	return serve[*raftqv1.ListResultsResponse](s.list, ctx, req)
}

// ListAttempts serves raftq.v1.Results/ListAttempts through the endpoint.
func (s *resultsServer) ListAttempts(ctx context.Context, req *raftqv1.ListAttemptsRequest) (*raftqv1.ListAttemptsResponse, error) {
	return serve[*raftqv1.ListAttemptsResponse](s.attempts, ctx, req)
}

// grpcError turns an error into a status with an ErrorDetail (the reason
// every raftq client switches on) and, for bad input, a
// google.rpc.BadRequest listing the fields.
func grpcError(err error) error {
	if _, ok := status.FromError(err); ok {
		return err // already a status (e.g. from a decoder)
	}
	_, m, msg := mappingFor(err)
	st := status.New(m.code, msg)
	details := []protoadapt.MessageV1{&raftqv1.ErrorDetail{Reason: m.reason}}
	var inv *service.InvalidError
	if errors.As(err, &inv) {
		br := &errdetails.BadRequest{}
		for _, v := range inv.Violations {
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{
				Field: v.Field, Description: v.Description,
			})
		}
		details = append(details, br)
	}
	if withDetails, derr := st.WithDetails(details...); derr == nil {
		st = withDetails
	}
	return st.Err()
}

// Status conversions between the wire enums and the store's strings.

var statusToPB = map[store.Status]raftqv1.ResultStatus{
	store.StatusSucceeded: raftqv1.ResultStatus_RESULT_STATUS_SUCCEEDED,
	store.StatusFailed:    raftqv1.ResultStatus_RESULT_STATUS_FAILED,
	store.StatusDead:      raftqv1.ResultStatus_RESULT_STATUS_DEAD,
}

var outcomeToPB = map[store.Outcome]raftqv1.StoreOutcome{
	store.OutcomeStored:           raftqv1.StoreOutcome_STORE_OUTCOME_STORED,
	store.OutcomeDuplicate:        raftqv1.StoreOutcome_STORE_OUTCOME_DUPLICATE,
	store.OutcomeAlreadySucceeded: raftqv1.StoreOutcome_STORE_OUTCOME_ALREADY_SUCCEEDED,
	store.OutcomeStale:            raftqv1.StoreOutcome_STORE_OUTCOME_STALE,
}

// statusFromPB maps the enum; an unknown number becomes a status string the
// validator refuses with a clear message.
func statusFromPB(s raftqv1.ResultStatus) store.Status {
	switch s {
	case raftqv1.ResultStatus_RESULT_STATUS_UNSPECIFIED:
		return ""
	case raftqv1.ResultStatus_RESULT_STATUS_SUCCEEDED:
		return store.StatusSucceeded
	case raftqv1.ResultStatus_RESULT_STATUS_FAILED:
		return store.StatusFailed
	case raftqv1.ResultStatus_RESULT_STATUS_DEAD:
		return store.StatusDead
	}
	return store.Status(fmt.Sprintf("status(%d)", int32(s)))
}

// timeFromPB converts an optional timestamp, reporting invalid ones.
func timeFromPB(ts *timestamppb.Timestamp, field string, bad *[]service.Violation) time.Time {
	if ts == nil {
		return time.Time{}
	}
	if err := ts.CheckValid(); err != nil {
		*bad = append(*bad, service.Violation{Field: field, Description: "is not a valid timestamp"})
		return time.Time{}
	}
	return ts.AsTime()
}

func timeToPB(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func resultToPB(r store.Result) *raftqv1.JobResult {
	return &raftqv1.JobResult{
		JobId:      r.JobID,
		Queue:      r.Queue,
		Type:       r.Type,
		LeaseToken: r.LeaseToken,
		WorkerId:   r.WorkerID,
		Attempt:    r.Attempt,
		Status:     statusToPB[r.Status],
		Output:     r.Output,
		Error:      r.Error,
		StartedAt:  timeToPB(r.StartedAt),
		FinishedAt: timeToPB(r.FinishedAt),
		CreatedAt:  timeToPB(r.CreatedAt),
		UpdatedAt:  timeToPB(r.UpdatedAt),
	}
}

func decodeStoreResult(_ context.Context, req any) (any, error) {
	pb := req.(*raftqv1.StoreResultRequest)
	var bad []service.Violation
	r := store.Result{
		JobID:      pb.GetJobId(),
		Queue:      pb.GetQueue(),
		Type:       pb.GetType(),
		LeaseToken: pb.GetLeaseToken(),
		WorkerID:   pb.GetWorkerId(),
		Attempt:    pb.GetAttempt(),
		Status:     statusFromPB(pb.GetStatus()),
		Output:     pb.GetOutput(),
		Error:      pb.GetError(),
		StartedAt:  timeFromPB(pb.GetStartedAt(), "started_at", &bad),
		FinishedAt: timeFromPB(pb.GetFinishedAt(), "finished_at", &bad),
	}
	if len(bad) > 0 {
		return nil, &service.InvalidError{Violations: bad}
	}
	return service.StoreResultRequest{Result: r}, nil
}

func encodeStoreResult(_ context.Context, resp any) (any, error) {
	r := resp.(service.StoreResultResponse).Reply
	return &raftqv1.StoreResultResponse{Outcome: outcomeToPB[r.Outcome], Result: resultToPB(r.Result)}, nil
}

func decodeGetResult(_ context.Context, req any) (any, error) {
	return service.GetResultRequest{JobID: req.(*raftqv1.GetResultRequest).GetJobId()}, nil
}

func encodeGetResult(_ context.Context, resp any) (any, error) {
	return &raftqv1.GetResultResponse{Result: resultToPB(resp.(service.GetResultResponse).Result)}, nil
}

func decodeListResults(_ context.Context, req any) (any, error) {
	pb := req.(*raftqv1.ListResultsRequest)
	var bad []service.Violation
	lr := service.ListRequest{
		Queue:          pb.GetQueue(),
		Type:           pb.GetType(),
		Status:         statusFromPB(pb.GetStatus()),
		FinishedAfter:  timeFromPB(pb.GetFinishedAfter(), "finished_after", &bad),
		FinishedBefore: timeFromPB(pb.GetFinishedBefore(), "finished_before", &bad),
		PageSize:       int(pb.GetPageSize()),
		Cursor:         pb.GetCursor(),
		IncludeOutput:  pb.GetIncludeOutput(),
	}
	if len(bad) > 0 {
		return nil, &service.InvalidError{Violations: bad}
	}
	return service.ListResultsRequest{ListRequest: lr}, nil
}

func encodeListResults(_ context.Context, resp any) (any, error) {
	r := resp.(service.ListResultsResponse)
	out := &raftqv1.ListResultsResponse{NextCursor: r.NextCursor}
	for _, res := range r.Results {
		out.Results = append(out.Results, resultToPB(res))
	}
	return out, nil
}

func decodeListAttempts(_ context.Context, req any) (any, error) {
	return service.ListAttemptsRequest{JobID: req.(*raftqv1.ListAttemptsRequest).GetJobId()}, nil
}

func encodeListAttempts(_ context.Context, resp any) (any, error) {
	r := resp.(service.ListAttemptsResponse)
	out := &raftqv1.ListAttemptsResponse{}
	for _, a := range r.Attempts {
		out.Attempts = append(out.Attempts, &raftqv1.Attempt{
			JobId:      a.JobID,
			LeaseToken: a.LeaseToken,
			WorkerId:   a.WorkerID,
			Attempt:    a.Attempt,
			Status:     statusToPB[a.Status],
			Error:      a.Error,
			StartedAt:  timeToPB(a.StartedAt),
			FinishedAt: timeToPB(a.FinishedAt),
			RecordedAt: timeToPB(a.RecordedAt),
			Outcome:    outcomeToPB[a.Outcome],
		})
	}
	return out, nil
}

// lenientCodec is the proto codec, except that a request that does not
// decode is not failed inside gRPC (which answers INTERNAL for that): the
// message is reset and remembered, and the interceptors answer
// INVALID_ARGUMENT before any handler runs. A malformed request is the
// client's fault and must say so.
type lenientCodec struct {
	encoding.CodecV2
	bad sync.Map // request message pointer → decode error
}

func newLenientCodec() *lenientCodec {
	return &lenientCodec{CodecV2: encoding.GetCodecV2("proto")}
}

// Unmarshal decodes like the proto codec; on failure it resets the message
// and remembers the error for the interceptors instead of failing.
func (c *lenientCodec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.CodecV2.Unmarshal(data, v)
	if err == nil {
		return nil
	}
	m, ok := v.(proto.Message)
	if !ok {
		return err
	}
	proto.Reset(m)
	c.bad.Store(v, err)
	return nil
}

func (c *lenientCodec) decodeError(req any) error {
	if e, ok := c.bad.LoadAndDelete(req); ok {
		st := status.New(codes.InvalidArgument, fmt.Sprintf("malformed request message: %v", e))
		if d, err := st.WithDetails(&raftqv1.ErrorDetail{Reason: raftqv1.ErrorDetail_INVALID_ARGUMENT}); err == nil {
			st = d
		}
		return st.Err()
	}
	return nil
}

func (c *lenientCodec) unaryInterceptor(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := c.decodeError(req); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func (c *lenientCodec) streamInterceptor(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	return h(srv, &checkedStream{ServerStream: ss, c: c})
}

type checkedStream struct {
	grpc.ServerStream
	c *lenientCodec
}

// RecvMsg refuses a streamed message that did not decode.
func (s *checkedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return s.c.decodeError(m)
}

// recoverInterceptor turns a panic in a handler into INTERNAL instead of a
// dead process: one bad request must not take the system of record down.
func recoverInterceptor(logger log.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if p := recover(); p != nil {
				_ = level.Error(logger).Log("msg", "panic in handler", "method", info.FullMethod, "panic", p, "stack", string(debug.Stack()))
				err = status.Error(codes.Internal, "internal error")
			}
		}()
		return h(ctx, req)
	}
}
