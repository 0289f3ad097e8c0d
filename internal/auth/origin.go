package auth

import "net/http"

// crossOrigin is the standard library's cross-site request check
// (net/http.CrossOriginProtection, Go 1.25): Sec-Fetch-Site when the
// browser sends it, else the Origin header against Host. "Origin: null"
// (sandboxed frames, file: pages, some redirects) matches no host, so it
// is cross-site. No trusted origins and no bypass patterns are added.
var crossOrigin = http.NewCrossOriginProtection()

// CrossSite reports whether r is a state-changing request a browser made
// on behalf of another site: a POST, PUT, PATCH or DELETE whose
// Sec-Fetch-Site is not same-origin or none, or, without it, whose
// Origin is not this host (null included). GET, HEAD and OPTIONS are
// never cross-site writes. Requests without either header (curl, SDKs)
// are not browser requests and pass.
//
// It is the one check behind the brokerd admin API (its dashboard, and
// Basic credentials a browser resends on its own) and svcd's HTTP API,
// where a cross-origin "text/plain" POST needs no CORS preflight.
func CrossSite(r *http.Request) bool { return crossOrigin.Check(r) != nil }

// RefuseCrossSite wraps next so that cross-site writes (CrossSite) are
// answered by refuse instead, before any credential is looked at or any
// body read.
func RefuseCrossSite(next http.Handler, refuse func(w http.ResponseWriter, r *http.Request)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if CrossSite(r) {
			refuse(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}
