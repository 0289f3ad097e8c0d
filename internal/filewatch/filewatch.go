// Package filewatch holds a value parsed from a few files and parses them
// again when any of them changes on disk, so certificates, keys and token
// lists can be rotated without restarting the process.
//
// A change is noticed by comparing each file's identity (inode), size and
// modification time at every Get: a stat per file, no goroutine, no timer,
// so the first use after a rotation already sees it. Rotate by writing a
// new file and renaming it into place (certgen.WriteAtomic, cert-manager,
// certbot all do): the rename changes the identity, so even a rewrite of
// the same size within one timestamp tick is seen.
//
// A rotation that does not parse (a key that no longer matches its
// certificate because only one of the two was replaced so far, a truncated
// file) leaves the last good value in force; the error is reported once
// per change through OnError, and the next change is tried again.
package filewatch

import (
	"fmt"
	"os"
	"sync"
)

// Set is a value parsed from files. Safe for concurrent use.
type Set[T any] struct {
	paths []string
	parse func(data [][]byte) (T, error)
	// OnError, when set, hears about a changed file set that failed to
	// parse (the previous value stays in force). Set it before sharing.
	OnError func(error)

	mu    sync.Mutex
	seen  []os.FileInfo // the stats of the last attempt
	value T
}

// New reads and parses the files now. Empty paths are passed to parse as
// nil data (optional files). An error names the file or the parse failure.
func New[T any](paths []string, parse func(data [][]byte) (T, error)) (*Set[T], error) {
	s := &Set[T]{paths: append([]string(nil), paths...), parse: parse}
	infos, data, err := s.read()
	if err != nil {
		return nil, err
	}
	v, err := parse(data)
	if err != nil {
		return nil, err
	}
	s.seen, s.value = infos, v
	return s, nil
}

// Get returns the current value, re-parsing the files first if any of
// them changed since the last look.
func (s *Set[T]) Get() T {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.changed() {
		return s.value
	}
	infos, data, err := s.read()
	if err == nil {
		var v T
		if v, err = s.parse(data); err == nil {
			s.value = v
		}
	}
	if infos != nil {
		s.seen = infos
	}
	if err != nil && s.OnError != nil {
		s.OnError(fmt.Errorf("reload: %w (keeping the previous version)", err))
	}
	return s.value
}

// changed reports whether any file differs from the last attempt.
func (s *Set[T]) changed() bool {
	for i, p := range s.paths {
		if p == "" {
			continue
		}
		fi, err := os.Stat(p)
		if err != nil {
			// Missing for a moment (a non-atomic rotation): keep going
			// with what we have; it is tried again at the next Get.
			return false
		}
		old := s.seen[i]
		if old == nil || !os.SameFile(old, fi) || !old.ModTime().Equal(fi.ModTime()) || old.Size() != fi.Size() {
			return true
		}
	}
	return false
}

func (s *Set[T]) read() ([]os.FileInfo, [][]byte, error) {
	infos := make([]os.FileInfo, len(s.paths))
	data := make([][]byte, len(s.paths))
	for i, p := range s.paths {
		if p == "" {
			continue
		}
		// Stat before reading: if the file changes in between, the next
		// Get sees a newer stat and reads again.
		fi, err := os.Stat(p)
		if err != nil {
			return nil, nil, err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, nil, err
		}
		infos[i], data[i] = fi, b
	}
	return infos, data, nil
}
