package auth

import (
	"errors"
	"net/http"

	"github.com/raftq/raftq/internal/bearer"
	"github.com/raftq/raftq/internal/tlsutil"
)

// BasicRealm is the realm of the WWW-Authenticate challenge HTTP servers
// send, so a browser asks for credentials: any user name, the token as
// the password.
const BasicRealm = `Basic realm="raftq", charset="UTF-8"`

// TokenFromHTTP is the bearer token of a request: "Authorization: Bearer
// <token>", or HTTP Basic with the token as the password (what a browser
// can send to the dashboard).
func TokenFromHTTP(r *http.Request) (string, bool) {
	h := r.Header.Values("Authorization")
	if len(h) != 1 {
		return "", false
	}
	if tok, ok := bearer.Parse(h[0]); ok {
		return tok, true
	}
	if _, pass, ok := r.BasicAuth(); ok && pass != "" {
		return pass, true
	}
	return "", false
}

// AuthenticateHTTP finds the principal of an HTTP request: its token (see
// TokenFromHTTP), or, without one, a node certificate.
func (a *Authorizer) AuthenticateHTTP(r *http.Request) (*Principal, error) {
	if len(r.Header.Values("Authorization")) > 0 {
		tok, ok := TokenFromHTTP(r)
		if !ok {
			return nil, unauthenticated(`authorization must be "Bearer <token>" (or Basic with the token as password)`)
		}
		return a.Verify(tok)
	}
	if r.TLS != nil {
		if p := a.nodePrincipal(tlsutil.PeerCertificate(*r.TLS)); p != nil {
			return p, nil
		}
	}
	return nil, unauthenticated("missing bearer token")
}

// HTTPStatus is the HTTP status of an auth error: 401, 403 or 429 (500
// for anything else).
func HTTPStatus(err error) int {
	var e *Error
	if !errors.As(err, &e) {
		return http.StatusInternalServerError
	}
	switch e.Kind {
	case ErrUnauthenticated:
		return http.StatusUnauthorized
	case ErrPermissionDenied:
		return http.StatusForbidden
	case ErrRateLimited:
		return http.StatusTooManyRequests
	}
	return http.StatusInternalServerError
}

// IsAuthError reports whether err is (or wraps) a refusal from this
// package.
func IsAuthError(err error) bool {
	var e *Error
	return errors.As(err, &e)
}
