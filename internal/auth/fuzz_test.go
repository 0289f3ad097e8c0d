package auth

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// FuzzAuthenticate feeds arbitrary Authorization headers (bearer tokens,
// Basic credentials, JWTs) to HTTP authentication with static tokens and
// HS256 JWTs configured. Nothing may panic, every refusal is
// Unauthenticated, and an accepted header must name one of the known
// principals with exactly its roles: no input forges or widens one.
func FuzzAuthenticate(f *testing.F) {
	dir := f.TempDir()
	secret := strings.Repeat("k", 32)
	now := time.Unix(1_900_000_000, 0)
	a, err := New(Config{
		TokensFile: filepath.Join(dir, "t.yaml"),
		JWT:        JWTConfig{HS256SecretFile: filepath.Join(dir, "secret")},
		Now:        func() time.Time { return now },
	})
	if err == nil || a != nil {
		// The files do not exist yet: New must refuse.
		f.Fatal("New accepted missing files")
	}
	writeFileF(f, dir, "t.yaml", tokensYAML())
	writeFileF(f, dir, "secret", secret)
	a, err = New(Config{
		TokensFile: filepath.Join(dir, "t.yaml"),
		JWT:        JWTConfig{HS256SecretFile: filepath.Join(dir, "secret")},
		Now:        func() time.Time { return now },
	})
	if err != nil {
		f.Fatal(err)
	}
	valid, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, &Claims{
		RegisteredClaims: jwt.RegisteredClaims{Subject: "svc", ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour))},
		Roles:            []string{"worker"}, Queues: []string{"q.*"},
	}).SignedString([]byte(secret))
	known := map[string]Roles{"token:ingest": RoleProducer, "token:runner": RoleWorker, "token:ops": RoleAdmin,
		"token:reporting": RoleProducer | RoleWorker, "jwt:svc": RoleWorker}
	for _, s := range []string{"Bearer " + producerToken, "Bearer " + adminToken, "bearer  " + workerToken + " ", "Bearer " + valid,
		"Basic " + "dTo=", "Basic !!!", "Bearer", "Bearer a.b.c", "Bearer " + valid[:len(valid)-2], "Token x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		r, _ := http.NewRequest(http.MethodGet, "/", nil)
		if h != "" {
			r.Header.Set("Authorization", h)
		}
		p, err := a.AuthenticateHTTP(r)
		if err != nil {
			if HTTPStatus(err) != http.StatusUnauthorized {
				t.Fatalf("%q refused with %v, want unauthenticated", h, err)
			}
			return
		}
		roles, ok := known[p.Name]
		if !ok || p.Roles != roles {
			t.Fatalf("%q authenticated as %+v", h, p)
		}
	})
}

// FuzzParseTokens feeds arbitrary tokens files to their parser: no panic,
// and every principal of an accepted file has a role, well-formed queue
// patterns, and queues unless it is an admin.
func FuzzParseTokens(f *testing.F) {
	f.Add([]byte(tokensYAML()))
	f.Add([]byte("tokens: []\n"))
	f.Add([]byte("tokens:\n  - {name: a, sha256: " + HashToken("x") + ", roles: [worker], queues: ['*']}\n"))
	f.Add([]byte("tokens: [\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		// A tokens file is a few KB; megabytes of generated YAML only make
		// single runs slow (and the fuzzer hit Go's fuzztime race on them).
		if len(data) > 16<<10 {
			return
		}
		tt, err := ParseTokens(data)
		if err != nil {
			return
		}
		for _, p := range tt {
			if p.Roles == 0 || p.Roles&RoleNode != 0 || (p.Roles&RoleAdmin == 0 && len(p.Queues) == 0) || !strings.HasPrefix(p.Name, "token:") {
				t.Fatalf("accepted principal %+v", p)
			}
			for _, q := range p.Queues {
				if q == "" {
					t.Fatalf("accepted an empty queue pattern: %+v", p)
				}
			}
		}
	})
}

func writeFileF(f *testing.F, dir, name, content string) {
	f.Helper()
	p := filepath.Join(dir, name)
	if err := writeAtomic(p, content); err != nil {
		f.Fatal(err)
	}
}
