// Package version is what every raftq binary prints for --version: the
// release (git describe), the commit and the Go toolchain it was built with.
//
// `make build` stamps Version and Commit with -ldflags -X; a binary built
// any other way (go build, go install, go run) falls back to what the Go
// toolchain recorded in the binary itself (runtime/debug.ReadBuildInfo:
// the module version and the vcs.revision of the checkout), so the answer
// is never empty without a reason.
package version

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// Version and Commit are set by the Makefile's build target:
//
//	-ldflags "-X github.com/raftq/raftq/internal/version.Version=$(git describe --tags --always --dirty)
//	          -X github.com/raftq/raftq/internal/version.Commit=$(git rev-parse HEAD)"
var (
	// Version is the release, from git describe.
	Version = ""
	// Commit is the git commit the binary was built from.
	Commit = ""
)

// Info is one binary's version, commit and Go version.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	GoVersion string `json:"go_version"`
}

// Get returns the stamped version and commit, or the build information the
// Go toolchain embedded when the binary was not built by make.
func Get() Info {
	i := Info{Version: Version, Commit: Commit, GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if i.Version == "" && bi.Main.Version != "" {
			i.Version = bi.Main.Version // "(devel)" for a plain go build in a checkout
		}
		if i.Commit == "" {
			dirty := false
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					i.Commit = s.Value
				case "vcs.modified":
					dirty = s.Value == "true"
				}
			}
			if dirty && i.Commit != "" {
				i.Commit += "-dirty"
			}
		}
	}
	if i.Version == "" {
		i.Version = "unknown"
	}
	if i.Commit == "" {
		i.Commit = "unknown"
	}
	return i
}

// String is the --version line of the binary called name.
func String(name string) string {
	i := Get()
	return fmt.Sprintf("%s %s (commit %s, %s)", name, i.Version, i.Commit, i.GoVersion)
}

// Requested reports whether args (os.Args[1:]) ask for the version only:
// the first argument is --version or -version. Binaries check it before
// anything else so the answer needs no configuration, data dir or network.
func Requested(args []string) bool {
	return len(args) > 0 && (args[0] == "--version" || args[0] == "-version")
}

// Print writes the --version line of name to w.
func Print(w io.Writer, name string) {
	fmt.Fprintln(w, String(name))
}
