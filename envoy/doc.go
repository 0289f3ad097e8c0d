// Package envoy holds raftq's Envoy configurations (envoy.yaml and the TLS
// variant envoy-tls.yaml) and their tests. It has no Go API: no Envoy binary
// can run where raftq is built, so the tests parse every *.yaml here into
// Envoy's bootstrap proto (go-control-plane), run its validation, and check
// the properties README.md promises against the broker's own code: the
// leader-only health service, fetch timeouts longer than the longest
// long-poll, and retries only on RPCs that are safe to repeat;
// groups/envoy-groups.yaml, the per-group example, is checked the same way
// against brokerd.GroupLeaderHealthService. A second test
// checks, on a real in-process cluster, that brokerd reports the leader-only
// health status on exactly the leader across a leader change.
package envoy
