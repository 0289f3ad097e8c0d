package auth

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Error is a refusal: its Kind is ErrUnauthenticated, ErrPermissionDenied
// or ErrRateLimited (errors.Is matches it), and it converts to the gRPC
// status of the same meaning.
type Error struct {
	Kind error
	Msg  string
}

// Error says what was refused and why, naming no secret.
func (e *Error) Error() string { return e.Kind.Error() + ": " + e.Msg }

// Is matches the kind.
func (e *Error) Is(target error) bool { return target == e.Kind }

// GRPCStatus is Unauthenticated, PermissionDenied or ResourceExhausted.
func (e *Error) GRPCStatus() *status.Status {
	code := codes.Unknown
	switch e.Kind {
	case ErrUnauthenticated:
		code = codes.Unauthenticated
	case ErrPermissionDenied:
		code = codes.PermissionDenied
	case ErrRateLimited:
		code = codes.ResourceExhausted
	}
	return status.New(code, e.Error())
}

func unauthenticated(msg string) error { return &Error{Kind: ErrUnauthenticated, Msg: msg} }
func denied(msg string) error          { return &Error{Kind: ErrPermissionDenied, Msg: msg} }
func rateLimited(name string) error {
	return &Error{Kind: ErrRateLimited, Msg: name + " is over its request rate; slow down"}
}
