// Package transport serves svcd's endpoints over gRPC (Go kit's grpc
// transport) and over HTTP JSON (chi with Go kit's http transport). It only
// translates wire formats and maps errors to status codes, in one table.
package transport

import (
	"net/http"

	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/svcd/service"
	"google.golang.org/grpc/codes"
)

// mapping is how one kind of error looks on each transport.
type mapping struct {
	code   codes.Code
	reason raftqv1.ErrorDetail_Reason
	http   int
	// public replaces the error text for server-side failures, whose
	// details (SQL, hosts) belong in svcd's log, not in answers.
	public string
}

// statusOf is the one place errors become gRPC and HTTP statuses.
var statusOf = map[service.Kind]mapping{
	service.KindInvalidArgument:  {codes.InvalidArgument, raftqv1.ErrorDetail_INVALID_ARGUMENT, http.StatusBadRequest, ""},
	service.KindTooLarge:         {codes.InvalidArgument, raftqv1.ErrorDetail_TOO_LARGE, http.StatusBadRequest, ""},
	service.KindStaleToken:       {codes.FailedPrecondition, raftqv1.ErrorDetail_STALE_TOKEN, http.StatusConflict, ""},
	service.KindNotFound:         {codes.NotFound, raftqv1.ErrorDetail_NOT_FOUND, http.StatusNotFound, ""},
	service.KindRateLimited:      {codes.ResourceExhausted, raftqv1.ErrorDetail_REASON_UNSPECIFIED, http.StatusTooManyRequests, "rate limit exceeded, retry later"},
	service.KindUnavailable:      {codes.Unavailable, raftqv1.ErrorDetail_REASON_UNSPECIFIED, http.StatusServiceUnavailable, "database unavailable, retry later"},
	service.KindCanceled:         {codes.Canceled, raftqv1.ErrorDetail_REASON_UNSPECIFIED, 499, ""},
	service.KindDeadlineExceeded: {codes.DeadlineExceeded, raftqv1.ErrorDetail_REASON_UNSPECIFIED, http.StatusGatewayTimeout, ""},
	service.KindInternal:         {codes.Internal, raftqv1.ErrorDetail_REASON_UNSPECIFIED, http.StatusInternalServerError, "internal error"},
	service.KindUnauthenticated:  {codes.Unauthenticated, raftqv1.ErrorDetail_REASON_UNSPECIFIED, http.StatusUnauthorized, ""},
	service.KindPermissionDenied: {codes.PermissionDenied, raftqv1.ErrorDetail_REASON_UNSPECIFIED, http.StatusForbidden, ""},
	// A result for a job the broker does not know: no lease can exist,
	// the worker must not ack (409 like a stale token).
	service.KindUnknownJob:        {codes.FailedPrecondition, raftqv1.ErrorDetail_NOT_FOUND, http.StatusConflict, ""},
	service.KindBrokerUnavailable: {codes.Unavailable, raftqv1.ErrorDetail_REASON_UNSPECIFIED, http.StatusServiceUnavailable, "broker unavailable to verify the result, retry later"},
}

func mappingFor(err error) (service.Kind, mapping, string) {
	kind := service.KindOf(err)
	m, ok := statusOf[kind]
	if !ok {
		m = statusOf[service.KindInternal]
	}
	msg := err.Error()
	if m.public != "" {
		msg = m.public
	}
	return kind, m, msg
}
