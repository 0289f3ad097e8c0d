// Package auth decides who may call raftq's APIs. A caller is a Principal:
// a name, roles (producer, worker, admin; node for brokers calling each
// other) and the queue patterns it may use. Principals come from bearer
// tokens — static tokens whose SHA-256 is listed in a tokens file, or JWTs
// (HS256 or RS256, github.com/golang-jwt/jwt/v5) — or, for nodes only,
// from a verified TLS client certificate whose common name matches the
// configured node names.
//
// The same Authorizer serves gRPC (a tap that authenticates and rate
// limits before a request is even read, and interceptors that check each
// method's role and queues against the request: grpc.go) and HTTP (the
// admin API and svcd: http.go). Refusals are Unauthenticated or
// PermissionDenied and happen before any handler runs, so a refused call
// changes nothing. Admin actions and refusals are written to the audit
// sink (audit.go), whatever the log level.
//
// Token lists and keys are files re-read when they change
// (internal/filewatch): adding or revoking a token needs no restart.
// SECURITY.md (repository root) has the threat model, configuration and
// rotation.
package auth

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"

	"github.com/raftq/raftq/internal/filewatch"
	"github.com/raftq/raftq/internal/nodeid"
)

// Roles is a set of roles.
type Roles uint8

// The roles. A principal may hold several.
const (
	// RoleProducer may enqueue, read and cancel jobs of its queues.
	RoleProducer Roles = 1 << iota
	// RoleWorker may fetch jobs of its queues and ack, nack and extend
	// their leases (and read them, to see cancellations), and store
	// results.
	RoleWorker
	// RoleAdmin may do everything, on every queue, including the admin
	// HTTP API, cluster membership, backup and restore.
	RoleAdmin
	// RoleNode is a broker calling another broker (Cluster.Join); it comes
	// only from a verified client certificate, never from a token.
	RoleNode
)

var roleNames = []struct {
	r    Roles
	name string
}{{RoleProducer, "producer"}, {RoleWorker, "worker"}, {RoleAdmin, "admin"}, {RoleNode, "node"}}

// ParseRole reads a role name a token may carry (producer, worker, admin).
func ParseRole(s string) (Roles, error) {
	for _, rn := range roleNames {
		if rn.name == strings.ToLower(strings.TrimSpace(s)) && rn.r != RoleNode {
			return rn.r, nil
		}
	}
	return 0, fmt.Errorf("unknown role %q: want producer, worker or admin", s)
}

// String lists the roles, comma-separated.
func (r Roles) String() string {
	var out []string
	for _, rn := range roleNames {
		if r&rn.r != 0 {
			out = append(out, rn.name)
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ",")
}

// Principal is an authenticated caller.
type Principal struct {
	// Name identifies the caller in logs and rate limits: "token:<name>",
	// "jwt:<subject>" or "node:<certificate CN>".
	Name  string
	Roles Roles
	// Queues are path.Match patterns of the queues the principal may use
	// ("*" is every queue). Admins may use every queue regardless.
	Queues []string
}

// Has reports whether the principal holds any of roles.
func (p *Principal) Has(roles Roles) bool { return p.Roles&roles != 0 }

// AllowsQueue reports whether the principal may use queue q.
func (p *Principal) AllowsQueue(q string) bool {
	if p.Roles&RoleAdmin != 0 {
		return true
	}
	for _, pat := range p.Queues {
		if ok, _ := path.Match(pat, q); ok {
			return true
		}
	}
	return false
}

// AllowsAllQueues reports whether the principal may use every queue (an
// admin, or a "*" pattern): what listing all queues needs.
func (p *Principal) AllowsAllQueues() bool {
	if p.Roles&RoleAdmin != 0 {
		return true
	}
	for _, pat := range p.Queues {
		if pat == "*" {
			return true
		}
	}
	return false
}

type ctxKey struct{}

// NewContext returns ctx carrying p.
func NewContext(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// FromContext returns the principal the call was authenticated as.
func FromContext(ctx context.Context) (*Principal, bool) {
	p, ok := ctx.Value(ctxKey{}).(*Principal)
	return p, ok && p != nil
}

// Errors of authentication and authorization. Error values returned by
// this package wrap one of them and carry a gRPC status (Unauthenticated,
// PermissionDenied, ResourceExhausted), so they cross gRPC as is; HTTP
// servers map them to 401, 403 and 429.
var (
	ErrUnauthenticated  = errors.New("unauthenticated")
	ErrPermissionDenied = errors.New("permission denied")
	ErrRateLimited      = errors.New("rate limited")
)

// Config says where principals come from. Auth is on when a tokens file
// or a JWT key is configured; a zero Config is auth off.
type Config struct {
	// TokensFile is a YAML file of static tokens, stored as SHA-256
	// hashes (see ParseTokens and SECURITY.md). Re-read when it changes.
	TokensFile string
	// JWT verifies bearer tokens that are JWTs.
	JWT JWTConfig
	// NodeNames are path.Match patterns of the common names (or node
	// URIs) of the certificates brokers present to each other ("node.*"):
	// a caller whose verified client certificate is a node certificate
	// (package nodeid: it also carries the node URI) that matches, and
	// which sends no token, is a node (role node).
	NodeNames []string
	// RateLimit is each principal's sustained requests per second (0: no
	// limit); RateBurst its bucket (default: RateLimit, at least 1).
	RateLimit float64
	RateBurst int
	// JobQueue finds the queue of an existing job, so calls that name a
	// job (ack, cancel, ...) are checked against the job's queue. Unknown
	// jobs pass: the call itself then answers NOT_FOUND. An error (the
	// lookup failed) refuses the call with that error: never fail open.
	JobQueue func(ctx context.Context, jobID string) (queue string, ok bool, err error)
	// Audit receives the audit lines: admin actions and refusals (default:
	// standard error). The caller closes it.
	Audit *AuditLog
	// Logger receives errors reading the token and key files (default
	// slog.Default()).
	Logger *slog.Logger
	// Now is the clock JWTs are checked against (default time.Now).
	Now func() time.Time
}

// JWTConfig verifies JWT bearer tokens. Exactly the configured algorithms
// are accepted (HS256 with the secret, RS256 with the public key); tokens
// must carry exp.
type JWTConfig struct {
	// HS256SecretFile holds the shared secret (at least 32 bytes;
	// surrounding whitespace is ignored).
	HS256SecretFile string
	// RS256PublicKeyFile holds the issuer's RSA public key (PEM, PKIX or
	// PKCS #1, or a certificate).
	RS256PublicKeyFile string
	// Issuer and Audience, when set, must match the token's iss and aud.
	Issuer   string
	Audience string
	// Leeway tolerates clock skew on exp, nbf and iat (default 30s).
	Leeway time.Duration
}

func (j JWTConfig) enabled() bool { return j.HS256SecretFile != "" || j.RS256PublicKeyFile != "" }

// Enabled reports whether auth is on.
func (c Config) Enabled() bool { return c.TokensFile != "" || c.JWT.enabled() }

// Validate checks the settings that need no file: node name patterns,
// rate limits.
func (c Config) Validate() error {
	var errs []error
	for _, p := range c.NodeNames {
		if _, err := path.Match(p, ""); err != nil || p == "" {
			errs = append(errs, fmt.Errorf("node name pattern %q is malformed", p))
		}
	}
	if c.RateLimit < 0 || c.RateBurst < 0 {
		errs = append(errs, errors.New("rate limit and burst must not be negative"))
	}
	if c.JWT.Leeway < 0 {
		errs = append(errs, errors.New("jwt leeway must not be negative"))
	}
	return errors.Join(errs...)
}

// Authorizer authenticates callers and authorizes their calls. A nil
// *Authorizer means auth is off; the server options it builds are then
// none.
type Authorizer struct {
	cfg    Config
	log    *slog.Logger
	audit  *AuditLog
	tokens *filewatch.Set[tokenTable] // nil without a tokens file
	jwt    *jwtVerifier               // nil without JWT
	limits *limiters                  // nil without a rate limit
}

// New loads the tokens file and JWT keys and returns an Authorizer, or nil
// when auth is off. Every problem with the files is an error naming the
// file and the entry.
func New(c Config) (*Authorizer, error) {
	if !c.Enabled() {
		return nil, nil
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Audit == nil {
		c.Audit = NewAuditLog(os.Stderr, AuditLimits{})
	}
	a := &Authorizer{cfg: c, log: c.Logger, audit: c.Audit}
	if c.TokensFile != "" {
		set, err := filewatch.New([]string{c.TokensFile}, func(d [][]byte) (tokenTable, error) {
			return ParseTokens(d[0])
		})
		if err != nil {
			return nil, fmt.Errorf("tokens file %s: %w", c.TokensFile, err)
		}
		set.OnError = func(err error) { a.log.Error("tokens file", "file", c.TokensFile, "err", err) }
		a.tokens = set
	}
	if c.JWT.enabled() {
		v, err := newJWTVerifier(c.JWT, c.Now, a.log)
		if err != nil {
			return nil, err
		}
		a.jwt = v
	}
	if c.RateLimit > 0 {
		a.limits = newLimiters(c.RateLimit, c.RateBurst)
	}
	return a, nil
}

// TokenSpec is one static token in a tokens file.
type TokenSpec struct {
	// Name identifies the token's holder (logs, audit, rate limits).
	Name string `yaml:"name"`
	// SHA256 is the hex SHA-256 of the token; the token itself is never
	// stored. HashToken computes it.
	SHA256 string   `yaml:"sha256"`
	Roles  []string `yaml:"roles"`
	// Queues are path.Match patterns ("orders.*", "*"); required for
	// producer and worker roles.
	Queues []string `yaml:"queues"`
}

// tokenTable maps a token's SHA-256 to its principal.
type tokenTable map[[sha256.Size]byte]*Principal

// HashToken is the hex SHA-256 of a token: what a tokens file stores.
func HashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// ParseTokens reads a tokens file:
//
//	tokens:
//	  - name: ingest
//	    sha256: 9f86d081884c7d65…   # HashToken(the token)
//	    roles: [producer]
//	    queues: ["orders.*"]
//
// Unknown fields, duplicate names or hashes, malformed hashes, unknown
// roles, bad patterns, and producer or worker tokens without queues are
// errors naming the entry.
func ParseTokens(data []byte) (tokenTable, error) {
	var doc struct {
		Tokens []TokenSpec `yaml:"tokens"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("parse: %w", err)
	}
	out := tokenTable{}
	names := map[string]bool{}
	var errs []error
	for i, t := range doc.Tokens {
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("token %d (%q): %s", i+1, t.Name, fmt.Sprintf(format, args...)))
		}
		if t.Name == "" {
			bad("name is required")
		} else if names[t.Name] {
			bad("name listed twice")
		}
		names[t.Name] = true
		raw, err := hex.DecodeString(strings.ToLower(t.SHA256))
		if err != nil || len(raw) != sha256.Size {
			bad("sha256 must be 64 hex digits (the SHA-256 of the token, not the token)")
			continue
		}
		var key [sha256.Size]byte
		copy(key[:], raw)
		if _, dup := out[key]; dup {
			bad("the same token hash is listed twice")
			continue
		}
		p, err := principal("token:"+t.Name, t.Roles, t.Queues)
		if err != nil {
			bad("%v", err)
			continue
		}
		out[key] = p
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// principal builds a principal from role names and queue patterns,
// checking them.
func principal(name string, roles, queues []string) (*Principal, error) {
	p := &Principal{Name: name}
	for _, r := range roles {
		role, err := ParseRole(r)
		if err != nil {
			return nil, err
		}
		p.Roles |= role
	}
	if p.Roles == 0 {
		return nil, errors.New("at least one role is required (producer, worker, admin)")
	}
	for _, q := range queues {
		if _, err := path.Match(q, ""); err != nil || q == "" {
			return nil, fmt.Errorf("queue pattern %q is malformed", q)
		}
	}
	if p.Roles&(RoleProducer|RoleWorker) != 0 && p.Roles&RoleAdmin == 0 && len(queues) == 0 {
		return nil, errors.New(`queues are required for producer and worker roles ("*" for every queue)`)
	}
	p.Queues = append([]string(nil), queues...)
	sort.Strings(p.Queues)
	return p, nil
}

// Verify returns the principal a bearer token stands for: a static token
// (by its SHA-256) or a valid JWT. Every failure is ErrUnauthenticated
// with a reason that names no secret.
func (a *Authorizer) Verify(token string) (*Principal, error) {
	if token == "" {
		return nil, unauthenticated("missing bearer token")
	}
	if a.tokens != nil {
		if p, ok := a.tokens.Get()[sha256.Sum256([]byte(token))]; ok {
			return p, nil
		}
	}
	if a.jwt != nil && strings.Count(token, ".") == 2 {
		p, err := a.jwt.verify(token)
		if err != nil {
			return nil, unauthenticated("invalid token: " + err.Error())
		}
		return p, nil
	}
	return nil, unauthenticated("invalid token")
}

// nodePrincipal is the principal of a caller whose verified client
// certificate is a node certificate (the node URI, and a name in
// NodeNames: the same test the Raft transport applies), or nil.
func (a *Authorizer) nodePrincipal(cert *x509.Certificate) *Principal {
	if cert == nil || len(a.cfg.NodeNames) == 0 {
		return nil
	}
	if _, err := nodeid.Check(cert, a.cfg.NodeNames, ""); err != nil {
		return nil
	}
	return &Principal{Name: "node:" + cert.Subject.CommonName, Roles: RoleNode}
}

// Access is what one call needs.
type Access struct {
	// Roles: the principal must hold one of them (0: any role).
	Roles Roles
	// Queues the call touches; AllQueues when it touches every queue (a
	// listing without a filter).
	Queues    []string
	AllQueues bool
	// Jobs the call names; each existing job's queue must be allowed.
	Jobs []string
}

// Check authorizes p for access: ErrPermissionDenied naming the role,
// queue or job refused, else nil.
func (a *Authorizer) Check(ctx context.Context, p *Principal, acc Access) error {
	if p == nil {
		return unauthenticated("no principal")
	}
	if acc.Roles != 0 && !p.Has(acc.Roles|RoleAdmin) {
		return denied(fmt.Sprintf("%s (roles %s) may not do this: it needs role %s", p.Name, p.Roles, acc.Roles))
	}
	if acc.AllQueues && !p.AllowsAllQueues() {
		return denied(fmt.Sprintf("%s may not read every queue: name the queues", p.Name))
	}
	for _, q := range acc.Queues {
		if !p.AllowsQueue(q) {
			return denied(fmt.Sprintf("%s may not use queue %q", p.Name, q))
		}
	}
	if len(acc.Jobs) > 0 && a.cfg.JobQueue != nil && p.Roles&RoleAdmin == 0 {
		for _, id := range acc.Jobs {
			q, ok, err := a.cfg.JobQueue(ctx, id)
			if err != nil {
				return fmt.Errorf("authorize job %s: %w", id, err)
			}
			if ok && !p.AllowsQueue(q) {
				return denied(fmt.Sprintf("%s may not use job %s (queue %q)", p.Name, id, q))
			}
		}
	}
	return nil
}

// Allow takes one request from p's rate limit: ErrRateLimited when the
// principal is over it.
func (a *Authorizer) Allow(p *Principal) error {
	if a.limits == nil || p == nil || p.Roles&RoleNode != 0 {
		return nil
	}
	if !a.limits.allow(p.Name) {
		return rateLimited(p.Name)
	}
	return nil
}
