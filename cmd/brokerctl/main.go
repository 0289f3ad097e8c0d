// Command brokerctl uses a raftq cluster from a shell: enqueue, inspect,
// fetch, ack, nack and extend jobs, queues, dead letters, the cluster's
// membership, backups, live settings in etcd, and a benchmark.
//
// It finds the leader by itself from any broker addresses given with
// --brokers (or RAFTQ_BROKERS). Every command prints a table by default
// and JSON with -o json, in the admin HTTP API's shapes (internal/adminapi;
// brokerctl links no broker code, TestLinksNoServerCode).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/internal/version"
)

func main() {
	root := rootCmd()
	if err := root.Execute(); err != nil {
		printError(root.ErrOrStderr(), jsonRequested(os.Args[1:]), err)
		os.Exit(1)
	}
}

// printError reports a failed command on stderr: a line of text, or with
// -o json a JSON object, so a script parsing the output never meets text.
func printError(w io.Writer, asJSON bool, err error) {
	if asJSON {
		b, _ := json.Marshal(map[string]any{"error": map[string]string{"message": err.Error()}})
		fmt.Fprintln(w, string(b))
		return
	}
	fmt.Fprintln(w, "brokerctl:", err)
}

// jsonRequested reads -o/--output from the raw arguments (the flag may not
// have been parsed when the command line itself was wrong).
func jsonRequested(args []string) bool {
	for i, a := range args {
		switch {
		case a == "-ojson", a == "--output=json", a == "-o=json":
			return true
		case (a == "-o" || a == "--output") && i+1 < len(args) && args[i+1] == "json":
			return true
		}
	}
	return false
}

type globals struct {
	brokers     string
	timeout     time.Duration
	dialTimeout time.Duration
	output      string // -o: table or json (output.go)
	// TLS and the bearer token (security.go).
	tlsCA, tlsCert, tlsKey, token string
}

// defaultBrokers are the addresses `make run` (scripts/run-cluster.sh)
// listens on.
const defaultBrokers = "127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103"

func (g *globals) client() (*client.Client, error) {
	addrs := g.addrs()
	if err := g.reachable("broker", addrs); err != nil {
		return nil, err
	}
	opts, err := g.clientOptions()
	if err != nil {
		return nil, err
	}
	return client.New(addrs, opts)
}

// reachable fails fast when no address accepts a TCP connection within
// --dial-timeout: gRPC would otherwise retry a refused port until the
// command's whole --timeout ran out and say only "context deadline
// exceeded". One reachable address is enough (the client finds the
// leader from there).
func (g *globals) reachable(what string, addrs []string) error {
	if len(addrs) == 0 {
		return fmt.Errorf("no %s addresses", what)
	}
	var why []string
	for _, a := range addrs {
		c, err := net.DialTimeout("tcp", a, g.dialTimeout)
		if err == nil {
			c.Close()
			return nil
		}
		why = append(why, err.Error())
	}
	return fmt.Errorf("cannot reach any %s within %s (is the cluster running? `make run` starts one): %s",
		what, g.dialTimeout, strings.Join(why, "; "))
}

func (g *globals) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), g.timeout)
}

func rootCmd() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "brokerctl",
		Short:         "Use a raftq broker cluster from the shell",
		Version:       version.String("brokerctl"),
		SilenceUsage:  true,
		SilenceErrors: true, // main prints them (as JSON under -o json)
	}
	root.SetVersionTemplate("{{.Version}}\n")
	def := os.Getenv("RAFTQ_BROKERS")
	if def == "" {
		def = defaultBrokers
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.brokers, "brokers", def, "broker gRPC addresses, comma-separated (env RAFTQ_BROKERS)")
	pf.DurationVar(&g.timeout, "timeout", 30*time.Second, "overall timeout of a command")
	pf.DurationVar(&g.dialTimeout, "dial-timeout", 2*time.Second, "give up on an address that accepts no connection within this")
	pf.StringVarP(&g.output, "output", "o", "table", "output format: table or json")
	g.securityFlags(pf)
	// Jobs (jobs.go), then the operator's commands (ops.go) and live
	// settings in etcd (config.go).
	root.AddCommand(enqueueCmd(g), fetchCmd(g), ackCmd(g), nackCmd(g), extendCmd(g), attemptsCmd(g), benchCmd(g))
	root.AddCommand(jobsCmd(g), queuesCmd(g), dlqCmd(g), schedulesCmd(g), clusterCmd(g), snapshotCmd(g), configCmd(g))
	root.AddCommand(aliases(g)...)
	return root
}

// aliases keep the older spellings working, hidden from help so each
// action has one command: get = jobs get, cancel = jobs cancel,
// stats = queues list, status = cluster status.
func aliases(g *globals) []*cobra.Command {
	find := func(parent *cobra.Command, name string) *cobra.Command {
		for _, c := range parent.Commands() {
			if c.Name() == name {
				return c
			}
		}
		panic("brokerctl: no command " + name)
	}
	alias := func(parent *cobra.Command, name, as string) *cobra.Command {
		c := find(parent, name)
		parent.RemoveCommand(c)
		c.Use = as + strings.TrimPrefix(c.Use, name)
		c.Hidden = true
		c.Short += " (alias of " + parent.Name() + " " + name + ")"
		return c
	}
	return []*cobra.Command{
		alias(jobsCmd(g), "get", "get"),
		alias(jobsCmd(g), "cancel", "cancel"),
		alias(queuesCmd(g), "list", "stats"),
		alias(clusterCmd(g), "status", "status"),
	}
}
