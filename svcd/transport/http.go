package transport

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	kithttp "github.com/go-kit/kit/transport/http"
	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/raftq/raftq/internal/auth"
	"github.com/raftq/raftq/svcd/service"
	"github.com/raftq/raftq/svcd/store"
)

// HTTPConfig configures the HTTP API.
type HTTPConfig struct {
	// MaxOutputBytes is the service's output limit; bodies may be a bit
	// larger (base64 and the other fields) so an oversized output gets the
	// validator's 400, while absurd bodies are cut off with 413.
	MaxOutputBytes int
	// Ready answers /readyz: nil means ready. Nil Ready means always ready.
	Ready func(ctx context.Context) error
	// Metrics serves /metrics when set.
	Metrics http.Handler
	Logger  log.Logger
	// Auth, when set, authenticates every request but /healthz and
	// /readyz (bearer token, or Basic with the token as password); the
	// endpoints then authorize the principal, and /metrics needs an
	// admin.
	Auth *auth.Authorizer
}

// NewHTTPHandler returns the chi router of the HTTP API:
//
//	POST /v1/results                     store a result (JSON body)
//	GET  /v1/results                     list (queue, type, status, finished_after, finished_before, page_size, cursor, include_output)
//	GET  /v1/results/{job_id}            one result, output included
//	GET  /v1/results/{job_id}/attempts   the job's attempt history
//	GET  /healthz  /readyz  /metrics
//
// Errors are JSON: {"error": {"code", "reason", "message", "violations"}}.
func NewHTTPHandler(eps service.Endpoints, cfg HTTPConfig) http.Handler {
	if cfg.MaxOutputBytes <= 0 {
		cfg.MaxOutputBytes = service.DefaultMaxOutputBytes
	}
	logger := cfg.Logger
	if logger == nil {
		logger = log.NewNopLogger()
	}
	maxBody := int64(cfg.MaxOutputBytes)*4/3 + 256<<10
	opts := []kithttp.ServerOption{
		kithttp.ServerErrorEncoder(encodeHTTPError),
		kithttp.ServerErrorHandler(debugErrors{logger}),
	}

	r := chi.NewRouter()
	r.Use(middleware.Recoverer, refuseCrossSite, authenticate(cfg.Auth))
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	r.Get("/readyz", func(w http.ResponseWriter, req *http.Request) {
		if cfg.Ready != nil {
			ctx, cancel := context.WithTimeout(req.Context(), 2*time.Second)
			defer cancel()
			if err := cfg.Ready(ctx); err != nil {
				_ = level.Warn(logger).Log("msg", "not ready", "err", err)
				writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "error": err.Error()})
				return
			}
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	if cfg.Metrics != nil {
		r.Handle("/metrics", cfg.Metrics)
	}
	r.Route("/v1/results", func(r chi.Router) {
		r.Method(http.MethodPost, "/", kithttp.NewServer(eps.StoreResult, decodeHTTPStore(maxBody), encodeHTTPStore, opts...))
		r.Method(http.MethodGet, "/", kithttp.NewServer(eps.ListResults, decodeHTTPList, encodeHTTPList, opts...))
		r.Method(http.MethodGet, "/{jobID}", kithttp.NewServer(eps.GetResult, decodeHTTPGet, encodeHTTPGet, opts...))
		r.Method(http.MethodGet, "/{jobID}/attempts", kithttp.NewServer(eps.ListAttempts, decodeHTTPAttempts, encodeHTTPAttempts, opts...))
	})
	r.NotFound(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusNotFound, errorBody{Error: jsonError{Code: "not_found", Message: "no such route"}})
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusMethodNotAllowed, errorBody{Error: jsonError{Code: "method_not_allowed", Message: "method not allowed"}})
	})
	return r
}

// JSONResult is a result on the HTTP API, times RFC 3339. Output is the
// text itself when it is valid UTF-8 (output_encoding "text"), else
// base64 (output_encoding "base64"): people and scripts read most
// outputs as they are, and any bytes still round-trip. On a write an
// absent output_encoding means base64, as before the field existed.
type JSONResult struct {
	JobID      string `json:"job_id"`
	Queue      string `json:"queue"`
	Type       string `json:"type"`
	LeaseToken uint64 `json:"lease_token"`
	WorkerID   string `json:"worker_id"`
	Attempt    int32  `json:"attempt"`
	Status     string `json:"status"`
	Output     string `json:"output,omitempty"`
	// OutputEncoding is "text" or "base64" (set whenever output is).
	OutputEncoding string     `json:"output_encoding,omitempty"`
	Error          string     `json:"error,omitempty"`
	StartedAt      *time.Time `json:"started_at,omitempty"`
	FinishedAt     *time.Time `json:"finished_at,omitempty"`
	CreatedAt      *time.Time `json:"created_at,omitempty"`
	UpdatedAt      *time.Time `json:"updated_at,omitempty"`
}

// JSONAttempt is one history entry on the HTTP API.
type JSONAttempt struct {
	JobID      string     `json:"job_id"`
	LeaseToken uint64     `json:"lease_token"`
	WorkerID   string     `json:"worker_id"`
	Attempt    int32      `json:"attempt"`
	Status     string     `json:"status"`
	Error      string     `json:"error,omitempty"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	RecordedAt *time.Time `json:"recorded_at,omitempty"`
	Outcome    string     `json:"outcome"`
}

type jsonError struct {
	Code       string              `json:"code"`
	Reason     string              `json:"reason,omitempty"`
	Message    string              `json:"message"`
	Violations []service.Violation `json:"violations,omitempty"`
}

type errorBody struct {
	Error jsonError `json:"error"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func timeVal(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}

// The output encodings of JSONResult.
const (
	OutputText   = "text"
	OutputBase64 = "base64"
)

// encodeOutput is an output as JSON text: itself when valid UTF-8, else
// base64.
func encodeOutput(b []byte) (string, string) {
	switch {
	case len(b) == 0:
		return "", ""
	case utf8.Valid(b):
		return string(b), OutputText
	}
	return base64.StdEncoding.EncodeToString(b), OutputBase64
}

// decodeOutput reverses encodeOutput; no encoding means base64 (the API's
// only form before output_encoding).
func decodeOutput(s, enc string) ([]byte, error) {
	switch enc {
	case OutputText:
		return []byte(s), nil
	case "", OutputBase64:
		if s == "" {
			return nil, nil
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, invalid("output", "is not valid base64 (set output_encoding to \"text\" to send text): "+err.Error())
		}
		return b, nil
	}
	return nil, invalid("output_encoding", fmt.Sprintf("is %q: want \"text\" or \"base64\"", enc))
}

func resultToJSON(r store.Result) JSONResult {
	out, enc := encodeOutput(r.Output)
	return JSONResult{
		JobID: r.JobID, Queue: r.Queue, Type: r.Type, LeaseToken: r.LeaseToken,
		WorkerID: r.WorkerID, Attempt: r.Attempt, Status: string(r.Status),
		Output: out, OutputEncoding: enc, Error: r.Error,
		StartedAt: timePtr(r.StartedAt), FinishedAt: timePtr(r.FinishedAt),
		CreatedAt: timePtr(r.CreatedAt), UpdatedAt: timePtr(r.UpdatedAt),
	}
}

func invalid(field, desc string) error {
	return &service.InvalidError{Violations: []service.Violation{{Field: field, Description: desc}}}
}

func decodeHTTPStore(maxBody int64) kithttp.DecodeRequestFunc {
	return func(_ context.Context, r *http.Request) (any, error) {
		body := http.MaxBytesReader(nil, r.Body, maxBody)
		dec := json.NewDecoder(body)
		dec.DisallowUnknownFields()
		var in JSONResult
		if err := dec.Decode(&in); err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return nil, errBodyTooLarge{limit: mbe.Limit}
			}
			return nil, invalid("body", "is not a valid JSON result: "+err.Error())
		}
		if _, err := dec.Token(); err != io.EOF {
			return nil, invalid("body", "has data after the JSON object")
		}
		output, err := decodeOutput(in.Output, in.OutputEncoding)
		if err != nil {
			return nil, err
		}
		return service.StoreResultRequest{Result: store.Result{
			JobID: in.JobID, Queue: in.Queue, Type: in.Type, LeaseToken: in.LeaseToken,
			WorkerID: in.WorkerID, Attempt: in.Attempt, Status: store.Status(in.Status),
			Output: output, Error: in.Error,
			StartedAt: timeVal(in.StartedAt), FinishedAt: timeVal(in.FinishedAt),
		}}, nil
	}
}

// errBodyTooLarge is a body past the transport's own limit: 413, since it
// never reached validation.
type errBodyTooLarge struct{ limit int64 }

// Error says the transport limit the body crossed.
func (e errBodyTooLarge) Error() string {
	return fmt.Sprintf("request body is over %d bytes", e.limit)
}

func encodeHTTPStore(_ context.Context, w http.ResponseWriter, resp any) error {
	r := resp.(service.StoreResultResponse).Reply
	return writeJSON(w, http.StatusOK, struct {
		Outcome string     `json:"outcome"`
		Result  JSONResult `json:"result"`
	}{string(r.Outcome), resultToJSON(r.Result)})
}

// jobIDParam reads {jobID}; chi matched on the escaped path when the id
// needed escaping, so unescape it then.
func jobIDParam(r *http.Request) (string, error) {
	id := chi.URLParam(r, "jobID")
	if r.URL.RawPath == "" {
		return id, nil
	}
	u, err := url.PathUnescape(id)
	if err != nil {
		return "", invalid("job_id", "is not a valid path segment")
	}
	return u, nil
}

func decodeHTTPGet(_ context.Context, r *http.Request) (any, error) {
	id, err := jobIDParam(r)
	if err != nil {
		return nil, err
	}
	return service.GetResultRequest{JobID: id}, nil
}

func encodeHTTPGet(_ context.Context, w http.ResponseWriter, resp any) error {
	return writeJSON(w, http.StatusOK, resultToJSON(resp.(service.GetResultResponse).Result))
}

func decodeHTTPAttempts(_ context.Context, r *http.Request) (any, error) {
	id, err := jobIDParam(r)
	if err != nil {
		return nil, err
	}
	return service.ListAttemptsRequest{JobID: id}, nil
}

func encodeHTTPAttempts(_ context.Context, w http.ResponseWriter, resp any) error {
	atts := resp.(service.ListAttemptsResponse).Attempts
	out := make([]JSONAttempt, len(atts))
	for i, a := range atts {
		out[i] = JSONAttempt{
			JobID: a.JobID, LeaseToken: a.LeaseToken, WorkerID: a.WorkerID, Attempt: a.Attempt,
			Status: string(a.Status), Error: a.Error,
			StartedAt: timePtr(a.StartedAt), FinishedAt: timePtr(a.FinishedAt), RecordedAt: timePtr(a.RecordedAt),
			Outcome: string(a.Outcome),
		}
	}
	return writeJSON(w, http.StatusOK, struct {
		Attempts []JSONAttempt `json:"attempts"`
	}{out})
}

var listParams = map[string]bool{
	"queue": true, "type": true, "status": true, "finished_after": true, "finished_before": true,
	"page_size": true, "cursor": true, "include_output": true,
}

func decodeHTTPList(_ context.Context, r *http.Request) (any, error) {
	q := r.URL.Query()
	var bad []service.Violation
	for k := range q {
		if !listParams[k] {
			bad = append(bad, service.Violation{Field: k, Description: "is not a known parameter"})
		}
	}
	lr := service.ListRequest{
		Queue:  q.Get("queue"),
		Type:   q.Get("type"),
		Status: store.Status(q.Get("status")),
		Cursor: q.Get("cursor"),
	}
	parseTime := func(name string) time.Time {
		v := q.Get(name)
		if v == "" {
			return time.Time{}
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			bad = append(bad, service.Violation{Field: name, Description: "is not an RFC 3339 time"})
		}
		return t
	}
	lr.FinishedAfter = parseTime("finished_after")
	lr.FinishedBefore = parseTime("finished_before")
	if v := q.Get("page_size"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			bad = append(bad, service.Violation{Field: "page_size", Description: "is not an integer"})
		}
		lr.PageSize = n
	}
	if v := q.Get("include_output"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			bad = append(bad, service.Violation{Field: "include_output", Description: "is not a boolean"})
		}
		lr.IncludeOutput = b
	}
	if len(bad) > 0 {
		return nil, &service.InvalidError{Violations: bad}
	}
	return service.ListResultsRequest{ListRequest: lr}, nil
}

func encodeHTTPList(_ context.Context, w http.ResponseWriter, resp any) error {
	r := resp.(service.ListResultsResponse)
	out := make([]JSONResult, len(r.Results))
	for i, res := range r.Results {
		out[i] = resultToJSON(res)
	}
	return writeJSON(w, http.StatusOK, struct {
		Results    []JSONResult `json:"results"`
		NextCursor string       `json:"next_cursor,omitempty"`
	}{out, r.NextCursor})
}

// encodeHTTPError writes the JSON error body with the status from the
// mapping table.
func encodeHTTPError(_ context.Context, err error, w http.ResponseWriter) {
	var tl errBodyTooLarge
	if errors.As(err, &tl) {
		writeJSON(w, http.StatusRequestEntityTooLarge, errorBody{Error: jsonError{
			Code: string(service.KindTooLarge), Reason: "TOO_LARGE", Message: tl.Error(),
		}})
		return
	}
	kind, m, msg := mappingFor(err)
	body := errorBody{Error: jsonError{Code: string(kind), Message: msg}}
	if m.reason != 0 {
		body.Error.Reason = m.reason.String()
	}
	var inv *service.InvalidError
	if errors.As(err, &inv) {
		body.Error.Violations = inv.Violations
	}
	writeJSON(w, m.http, body)
}

func writeJSON(w http.ResponseWriter, code int, v any) error {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	return json.NewEncoder(w).Encode(v)
}

// debugErrors logs at debug every error a transport sees; undecodable
// requests, which never reach the endpoints' logging middleware, are logged
// nowhere else.
type debugErrors struct{ l log.Logger }

// Handle implements Go kit's transport.ErrorHandler.
func (d debugErrors) Handle(_ context.Context, err error) {
	_ = level.Debug(d.l).Log("msg", "transport error", "err", err)
}

// authenticate puts the caller's principal into the request's context
// (the endpoints authorize it) and refuses callers without one; the
// probes stay open to load balancers, /metrics is for admins.
func authenticate(a *auth.Authorizer) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if a == nil {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
				next.ServeHTTP(w, r)
				return
			}
			p, err := a.AuthenticateHTTP(r)
			if err == nil {
				err = a.Allow(p)
			}
			if err == nil && r.URL.Path == "/metrics" {
				err = a.Check(r.Context(), p, auth.Access{Roles: auth.RoleAdmin})
			}
			if err != nil {
				if auth.HTTPStatus(err) == http.StatusUnauthorized {
					w.Header().Set("WWW-Authenticate", auth.BasicRealm)
				}
				encodeHTTPError(r.Context(), err, w)
				a.AuditHTTP(r, p, "", auth.HTTPStatus(err), err) // rate limited by the sink
				return
			}
			ctx := auth.NewContext(r.Context(), p)
			if tok, ok := auth.TokenFromHTTP(r); ok {
				// The broker verification of a StoreResult asks the
				// broker as the caller (svcd/brokercheck).
				ctx = auth.WithToken(ctx, tok)
			}
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

// refuseCrossSite answers 403 to a write another site's page made a
// browser send (auth.CrossSite: Sec-Fetch-Site, or an Origin that is not
// this host, "null" included), with auth on or off: svcd serves no pages,
// so no browser write to it is legitimate, and a cross-origin "text/plain"
// POST needs no CORS preflight. Tools and SDKs send neither header.
func refuseCrossSite(next http.Handler) http.Handler {
	return auth.RefuseCrossSite(next, func(w http.ResponseWriter, r *http.Request) {
		encodeHTTPError(r.Context(), &auth.Error{Kind: auth.ErrPermissionDenied, Msg: "cross-site request refused"}, w)
	})
}
