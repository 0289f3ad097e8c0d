package auth

import (
	"bytes"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/raftq/raftq/internal/filewatch"
)

// Claims are what a raftq JWT carries besides the registered claims: the
// roles and queue patterns of its subject (same meaning as in a tokens
// file). sub names the principal; exp is required.
type Claims struct {
	jwt.RegisteredClaims
	Roles  []string `json:"roles"`
	Queues []string `json:"queues,omitempty"`
}

// minHS256Secret is the shortest shared secret accepted: a shorter one
// can be brute-forced from a single token.
const minHS256Secret = 32

type jwtKeys struct {
	hs  []byte
	rsa *rsa.PublicKey
}

type jwtVerifier struct {
	keys   *filewatch.Set[jwtKeys]
	parser *jwt.Parser
}

func newJWTVerifier(c JWTConfig, now func() time.Time, log *slog.Logger) (*jwtVerifier, error) {
	set, err := filewatch.New([]string{c.HS256SecretFile, c.RS256PublicKeyFile}, func(d [][]byte) (jwtKeys, error) {
		var k jwtKeys
		if c.HS256SecretFile != "" {
			k.hs = bytes.TrimSpace(d[0])
			if len(k.hs) < minHS256Secret {
				return k, fmt.Errorf("jwt secret %s: %d bytes, at least %d required", c.HS256SecretFile, len(k.hs), minHS256Secret)
			}
		}
		if c.RS256PublicKeyFile != "" {
			pub, err := jwt.ParseRSAPublicKeyFromPEM(d[1])
			if err != nil {
				return k, fmt.Errorf("jwt public key %s: %w", c.RS256PublicKeyFile, err)
			}
			k.rsa = pub
		}
		return k, nil
	})
	if err != nil {
		return nil, err
	}
	set.OnError = func(err error) { log.Error("jwt keys", "err", err) }
	var methods []string
	if c.HS256SecretFile != "" {
		methods = append(methods, "HS256")
	}
	if c.RS256PublicKeyFile != "" {
		methods = append(methods, "RS256")
	}
	leeway := c.Leeway
	if leeway == 0 {
		leeway = 30 * time.Second
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(methods),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(now),
	}
	if c.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(c.Issuer))
	}
	if c.Audience != "" {
		opts = append(opts, jwt.WithAudience(c.Audience))
	}
	return &jwtVerifier{keys: set, parser: jwt.NewParser(opts...)}, nil
}

func (v *jwtVerifier) verify(token string) (*Principal, error) {
	keys := v.keys.Get()
	var cl Claims
	_, err := v.parser.ParseWithClaims(token, &cl, func(t *jwt.Token) (any, error) {
		switch t.Method.Alg() {
		case "HS256":
			return keys.hs, nil
		case "RS256":
			return keys.rsa, nil
		}
		return nil, errors.New("unexpected algorithm")
	})
	if err != nil {
		return nil, err
	}
	if cl.Subject == "" {
		return nil, errors.New("token has no subject (sub)")
	}
	return principal("jwt:"+cl.Subject, cl.Roles, cl.Queues)
}
