// Package configtest checks the example configuration files in
// docs/examples against a daemon's `config` subcommand, so the examples
// in the docs cannot drift from the keys the daemons accept.
package configtest

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// Example is the path of docs/examples/name from any package's test.
func Example(t testing.TB, name string) string {
	t.Helper()
	_, self, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(self), "..", "..", "..", "docs", "examples", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
	return p
}

// leaves lists the dotted keys of the YAML document's scalar and list
// values.
func leaves(prefix string, n *yaml.Node, out *[]string) {
	if n.Kind == yaml.DocumentNode {
		for _, c := range n.Content {
			leaves(prefix, c, out)
		}
		return
	}
	if n.Kind != yaml.MappingNode {
		*out = append(*out, prefix)
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i].Value
		if prefix != "" {
			k = prefix + "." + k
		}
		leaves(k, n.Content[i+1], out)
	}
}

// CheckExample runs a daemon's `config` subcommand (run, given --config
// FILE) on docs/examples/name and checks it with CheckReported.
func CheckExample(t testing.TB, name string, run func(args []string, stdout, stderr io.Writer) int) {
	t.Helper()
	file := Example(t, name)
	var out, errb bytes.Buffer
	if code := run([]string{"--config", file}, &out, &errb); code != 0 {
		t.Fatalf("config --config %s: exit %d: %s", file, code, errb.String())
	}
	CheckReported(t, file, out.String())
}

// CheckReported fails unless output (the `config` subcommand's, run with
// --config file) attributes every key the file sets to the file: a key
// the daemon does not know makes `config` fail, and one it knows under
// another spelling would show as a default.
func CheckReported(t testing.TB, file, output string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	var keys []string
	leaves("", &doc, &keys)
	sort.Strings(keys)
	fromFile := 0
	for _, line := range strings.Split(output, "\n") {
		if strings.Contains(line, "# file ") {
			fromFile++
		}
	}
	if len(keys) == 0 || fromFile != len(keys) {
		t.Fatalf("%s sets %d keys %v, `config` attributes %d to the file:\n%s", file, len(keys), keys, fromFile, output)
	}
}
