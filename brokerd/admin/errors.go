package admin

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/raftq/raftq/internal/auth"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/raftqerr"
)

// Error codes of the error shape. Clients switch on these, not on
// messages.
const (
	CodeInvalidArgument  = "INVALID_ARGUMENT"
	CodeNotFound         = "NOT_FOUND"
	CodeWrongState       = "WRONG_STATE"
	CodeStaleToken       = "STALE_TOKEN"
	CodeTooLarge         = "TOO_LARGE"
	CodeNotLeader        = "NOT_LEADER"
	CodeIndeterminate    = "INDETERMINATE"
	CodeUnavailable      = "UNAVAILABLE"
	CodeNotConfigured    = "NOT_CONFIGURED"
	CodeTimeout          = "TIMEOUT"
	CodeNotReady         = "NOT_READY"
	CodeMethodNotAllowed = "METHOD_NOT_ALLOWED"
	CodeForbidden        = "FORBIDDEN"
	CodeInternal         = "INTERNAL"
	// CodeUnauthenticated: no valid token (401, with a Basic challenge so
	// a browser asks for one: the token is the password).
	CodeUnauthenticated = "UNAUTHENTICATED"
	// CodeRateLimited: the caller is over its request rate (429).
	CodeRateLimited = "RATE_LIMITED"
)

// ErrorBody is the one error shape of the API:
//
//	{"error": {"code": "NOT_FOUND", "message": "...", "request_id": "...",
//	           "leader_id": "n1", "leader_addr": "10.0.0.1:7101"}}
//
// leader_* appear on NOT_LEADER when the leader is known.
type ErrorBody struct {
	Error ErrorInfo `json:"error"`
}

// ErrorInfo is the content of ErrorBody.
type ErrorInfo struct {
	Code       string `json:"code"`
	Message    string `json:"message"`
	RequestID  string `json:"request_id,omitempty"`
	LeaderID   string `json:"leader_id,omitempty"`
	LeaderAddr string `json:"leader_addr,omitempty"`
}

// apiError is an error with its HTTP status and code already decided.
type apiError struct {
	status int
	info   ErrorInfo
}

func (e *apiError) Error() string { return e.info.Message }

func newErr(status int, code, msg string) error {
	return &apiError{status: status, info: ErrorInfo{Code: code, Message: msg}}
}

func invalid(msg string) error { return newErr(http.StatusBadRequest, CodeInvalidArgument, msg) }

// toAPIError classifies any error: the gRPC statuses of the node's API
// (with their ErrorDetail), body-size errors, and context errors.
func toAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return &apiError{http.StatusRequestEntityTooLarge, ErrorInfo{Code: CodeTooLarge, Message: "request body over the limit of " + itoa(mbe.Limit) + " bytes"}}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return &apiError{http.StatusGatewayTimeout, ErrorInfo{Code: CodeTimeout, Message: "request timed out"}}
	}
	st, ok := status.FromError(err)
	if !ok {
		return &apiError{http.StatusInternalServerError, ErrorInfo{Code: CodeInternal, Message: err.Error()}}
	}
	info := ErrorInfo{Message: st.Message()}
	d := raftqerr.Detail(err)
	switch {
	case d != nil && d.Reason == raftqv1.ErrorDetail_NOT_LEADER:
		info.Code, info.LeaderID, info.LeaderAddr = CodeNotLeader, d.LeaderId, d.LeaderAddr
		return &apiError{http.StatusServiceUnavailable, info}
	case d != nil && d.Reason == raftqv1.ErrorDetail_INDETERMINATE:
		info.Code = CodeIndeterminate
		return &apiError{http.StatusServiceUnavailable, info}
	case d != nil && d.Reason == raftqv1.ErrorDetail_STALE_TOKEN:
		info.Code = CodeStaleToken
		return &apiError{http.StatusConflict, info}
	case d != nil && d.Reason == raftqv1.ErrorDetail_WRONG_STATE:
		info.Code = CodeWrongState
		return &apiError{http.StatusConflict, info}
	case d != nil && d.Reason == raftqv1.ErrorDetail_TOO_LARGE:
		info.Code = CodeTooLarge
		return &apiError{http.StatusRequestEntityTooLarge, info}
	}
	switch st.Code() {
	case codes.Unauthenticated:
		info.Code = CodeUnauthenticated
		return &apiError{http.StatusUnauthorized, info}
	case codes.PermissionDenied:
		info.Code = CodeForbidden
		return &apiError{http.StatusForbidden, info}
	case codes.NotFound:
		info.Code = CodeNotFound
		return &apiError{http.StatusNotFound, info}
	case codes.InvalidArgument, codes.OutOfRange:
		info.Code = CodeInvalidArgument
		return &apiError{http.StatusBadRequest, info}
	case codes.AlreadyExists, codes.FailedPrecondition:
		info.Code = CodeWrongState
		return &apiError{http.StatusConflict, info}
	case codes.ResourceExhausted:
		if strings.Contains(st.Message(), auth.ErrRateLimited.Error()) {
			info.Code = CodeRateLimited
			return &apiError{http.StatusTooManyRequests, info}
		}
		info.Code = CodeTooLarge
		return &apiError{http.StatusRequestEntityTooLarge, info}
	case codes.DeadlineExceeded, codes.Canceled:
		info.Code = CodeTimeout
		return &apiError{http.StatusGatewayTimeout, info}
	case codes.Unavailable, codes.Aborted:
		info.Code = CodeUnavailable
		return &apiError{http.StatusServiceUnavailable, info}
	}
	info.Code = CodeInternal
	return &apiError{http.StatusInternalServerError, info}
}

// writeError sends the error shape with the request id.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	ae := toAPIError(err)
	info := ae.info
	info.RequestID = requestID(r.Context())
	writeJSON(w, ae.status, ErrorBody{Error: info})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

type ctxKey int

const requestIDKey ctxKey = 0

// requestID is the request's id: the caller's X-Request-Id when it is
// sane, else a fresh one. Every response and error carries it, and it is
// logged with failures, so an operator can match a report to a log line.
func requestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func saneID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, c := range s {
		if c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
