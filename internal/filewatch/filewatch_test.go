package filewatch

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func write(t *testing.T, path, s string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestReloadOnChange(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	write(t, a, "1")
	write(t, b, "2")
	parses := 0
	sum := func(d [][]byte) (int, error) {
		parses++
		x, err := strconv.Atoi(string(d[0]))
		if err != nil {
			return 0, err
		}
		y := 0
		if d[2] != nil {
			y, err = strconv.Atoi(string(d[2]))
		}
		return x + y, err
	}
	s, err := New([]string{a, "", b}, sum)
	if err != nil {
		t.Fatal(err)
	}
	var reported []error
	s.OnError = func(err error) { reported = append(reported, err) }
	if v := s.Get(); v != 3 || parses != 1 {
		t.Fatalf("Get = %d after %d parses, want 3 after 1", v, parses)
	}
	write(t, b, "5") // same size, new file
	if v := s.Get(); v != 6 {
		t.Fatalf("after a change Get = %d, want 6", v)
	}
	write(t, a, "x")
	if v := s.Get(); v != 6 || len(reported) != 1 {
		t.Fatalf("a broken change: Get = %d with %d reports, want the old 6 and 1 report", v, len(reported))
	}
	if v := s.Get(); v != 6 || len(reported) != 1 {
		t.Fatalf("the same broken files are reported once: %d reports", len(reported))
	}
	write(t, a, "10")
	if v := s.Get(); v != 15 {
		t.Fatalf("after a fix Get = %d, want 15", v)
	}
	if p := parses; s.Get() != 15 || parses != p {
		t.Fatal("an unchanged file set was parsed again")
	}
}

func TestNewReportsFirstFailure(t *testing.T) {
	dir := t.TempDir()
	if _, err := New([]string{filepath.Join(dir, "missing")}, func([][]byte) (int, error) { return 0, nil }); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("missing file: %v", err)
	}
	p := filepath.Join(dir, "f")
	write(t, p, "x")
	bad := errors.New("bad content")
	if _, err := New([]string{p}, func([][]byte) (int, error) { return 0, bad }); !errors.Is(err, bad) {
		t.Fatalf("parse error: %v", err)
	}
}
