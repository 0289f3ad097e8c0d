package admin

import (
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"google.golang.org/grpc/metadata"

	"github.com/raftq/raftq/internal/auth"
)

// publicPath reports whether a path is served without authentication:
// probes (a load balancer has no token), the API description, the
// redirect to the dashboard and its static files.
func publicPath(p string) bool {
	switch p {
	case "/", "/healthz", "/readyz", "/openapi.yaml":
		return true
	}
	return strings.HasPrefix(p, "/ui/static/")
}

// audited reports whether a request is written to the audit log: anything
// that changes state, takes a backup, or profiles the process.
func audited(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return true
	}
	return r.URL.Path == "/v1/cluster/snapshot" || strings.HasPrefix(r.URL.Path, "/debug/")
}

// refuseCrossSite answers 403 to a write a browser makes for another
// site's page (auth.CrossSite: "Origin: null" included), auth on or off: a
// browser resends Basic credentials on its own, and with auth off any
// page could otherwise pause a queue on a loopback broker with a
// "text/plain" POST that needs no CORS preflight. The dashboard's own
// pages and forms are same-origin; tools send no browser headers.
func refuseCrossSite(next http.Handler) http.Handler {
	return auth.RefuseCrossSite(next, func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, newErr(http.StatusForbidden, CodeForbidden, "cross-site request refused"))
	})
}

// authenticate lets only admins in when auth is on. The caller's token
// is attached to the request's outgoing gRPC metadata, so the node's API
// (and svcd) authorize the same principal again: a follower forwards it
// to the leader as the caller, never as itself.
func (s *Server) authenticate(next http.Handler) http.Handler {
	a := s.cfg.Auth
	if a == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if publicPath(r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		p, err := a.AuthenticateHTTP(r)
		if err == nil {
			err = a.Allow(p)
		}
		if err == nil {
			err = a.Check(r.Context(), p, auth.Access{Roles: auth.RoleAdmin})
		}
		if err != nil {
			if auth.HTTPStatus(err) == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", auth.BasicRealm)
			}
			writeError(w, r, err)
			// Every refusal is audited (the sink rate limits them).
			a.AuditHTTP(r, p, "", auth.HTTPStatus(err), err)
			return
		}
		ctx := auth.NewContext(r.Context(), p)
		if tok, ok := auth.TokenFromHTTP(r); ok {
			ctx = auth.WithToken(ctx, tok)
		}
		// This request is audited here (or is a read): the gRPC calls it
		// makes, over the node's certificate, are not audited again.
		ctx = metadata.AppendToOutgoingContext(ctx, auth.RelayedKey, "admin-http")
		r = r.WithContext(ctx)
		if !audited(r) {
			next.ServeHTTP(w, r)
			return
		}
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		next.ServeHTTP(ww, r)
		route := ""
		if rc := chi.RouteContext(r.Context()); rc != nil {
			route = rc.RoutePattern()
		}
		code := ww.Status()
		if code == 0 {
			code = http.StatusOK
		}
		a.AuditHTTP(r, p, route, code, nil)
	})
}
