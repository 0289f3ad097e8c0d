// Package bearer is the wire form of raftq's token authentication: the
// gRPC per-RPC credentials a caller sends its bearer token with, and the
// parser servers read it back with. It is kept apart from internal/auth
// (the servers' side: token files, JWTs, roles, audit) so the SDKs
// (client, results) link none of that.
package bearer

import (
	"context"
	"strings"
)

// MetadataKey is the gRPC metadata key (and HTTP header, lower-cased)
// that carries "Bearer <token>".
const MetadataKey = "authorization"

// Credentials are gRPC per-RPC credentials sending Token as the bearer
// with every call. They refuse to send it over a connection without
// transport security unless Insecure is set (never do that across a
// network: the token is the caller's whole identity).
type Credentials struct {
	Token    string
	Insecure bool
}

// GetRequestMetadata is the authorization header.
func (c Credentials) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{MetadataKey: "Bearer " + c.Token}, nil
}

// RequireTransportSecurity is true unless Insecure.
func (c Credentials) RequireTransportSecurity() bool { return !c.Insecure }

// Parse reads the token of an authorization value "Bearer <token>" (the
// scheme in any case, spaces around ignored); false when it is not one.
func Parse(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}
