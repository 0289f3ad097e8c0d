package testutil

import (
	"os"
	"os/exec"
	"strings"
)

// childEnv names the command a test binary started by Child runs as;
// childArgsEnv carries its arguments, one a line.
const (
	childEnv     = "RAFTQ_TEST_CHILD"
	childArgsEnv = "RAFTQ_TEST_CHILD_ARGS"
)

// RunChild is for a command's TestMain. When Child started this test
// binary, it runs main as the command called name (os.Args are name and
// the child's arguments) and exits 0 when main returns; otherwise it
// returns at once and TestMain runs the tests. It is the cheapest way to
// test a real process of the command without building another binary.
func RunChild(name string, main func()) {
	if os.Getenv(childEnv) != name {
		return
	}
	os.Args = []string{name}
	if a := os.Getenv(childArgsEnv); a != "" {
		os.Args = append(os.Args, strings.Split(a, "\n")...)
	}
	main()
	os.Exit(0)
}

// Child is a command that runs this test binary as the command called
// name (see RunChild) with args; the caller sets its output and starts
// it. Its environment is the test's without the RAFTQ_* variables of the
// developer's shell, so the child sees exactly args.
func Child(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RAFTQ_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, childEnv+"="+name, childArgsEnv+"="+strings.Join(args, "\n"))
	return cmd
}
