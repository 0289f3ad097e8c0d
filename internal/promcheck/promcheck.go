// Package promcheck runs `promtool check metrics` on a daemon's /metrics
// output in tests, so every raftq daemon's metrics follow Prometheus'
// conventions exactly as Prometheus' own tool judges them.
//
// The promtool used is, in order: $PROMTOOL; `promtool` on PATH; a copy
// built from github.com/prometheus/prometheus/cmd/promtool@Version into
// the user cache dir (scripts/promtool-install.sh builds it in CI ahead of
// the tests; otherwise the first test builds it once, under a file lock,
// which takes a few minutes). If it cannot be had and CI is not "true", the
// check falls back to client_golang's promlint package (the linter promtool
// check metrics runs) and says so in the test log; under CI=true that is a
// failure instead.
package promcheck

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// Version is the prometheus module version promtool is built from.
const Version = "v0.316.0"

var (
	findOnce sync.Once
	found    string
	findErr  error
)

// CacheDir is where the built promtool lives.
func CacheDir() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "raftq", "promtool", Version), nil
}

// Path returns a promtool binary, building it once if need be.
func Path() (string, error) {
	findOnce.Do(func() { found, findErr = locate() })
	return found, findErr
}

func locate() (string, error) {
	if p := os.Getenv("PROMTOOL"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("promtool"); err == nil {
		return p, nil
	}
	dir, err := CacheDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "promtool")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// One build at a time across test processes (go test runs packages in
	// parallel): the others wait on the lock and then find the binary.
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	cmd := exec.Command("go", "install", "github.com/prometheus/prometheus/cmd/promtool@"+Version)
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=-mod=mod", "GOWORK=off")
	cmd.Dir = dir // outside any module: `go install pkg@version` uses its own go.mod
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build promtool %s: %v\n%s", Version, err, out)
	}
	return bin, nil
}

// Check runs `promtool check metrics` on body and fails t with every
// problem it reports.
func Check(t testing.TB, body []byte) {
	t.Helper()
	bin, err := Path()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("promtool unavailable under CI (run scripts/promtool-install.sh first): %v", err)
		}
		t.Logf("promtool unavailable (%v); checking with client_golang's promlint, which promtool check metrics runs", err)
		problems, lerr := promlint.New(bytes.NewReader(body)).Lint()
		if lerr != nil {
			t.Fatalf("promlint: %v", lerr)
		}
		for _, p := range problems {
			t.Errorf("promlint: %s: %s", p.Metric, p.Text)
		}
		return
	}
	cmd := exec.Command(bin, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("promtool check metrics failed (exit %d):\n%s", ee.ExitCode(), out)
		}
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
	t.Logf("promtool check metrics: OK (%d bytes, %s)", len(body), bin)
}

// Scrape GETs url (a /metrics endpoint) and returns the body in the text
// exposition format that promtool reads.
func Scrape(t testing.TB, url string) []byte {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %s: %s", url, resp.Status, body)
	}
	if !strings.Contains(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("scrape %s: content type %q, want the text format", url, resp.Header.Get("Content-Type"))
	}
	return body
}

// CheckURL scrapes url and checks what it serves.
func CheckURL(t testing.TB, url string) []byte {
	t.Helper()
	body := Scrape(t, url)
	Check(t, body)
	return body
}
