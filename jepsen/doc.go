// Package jepsen is the root of raftq's Jepsen-style fault-injection
// harness. It holds no code; see DESIGN.md beside it. The harness runs real
// brokerd processes, each in its own network namespace, and a real svcd,
// injects faults while in-harness producers, workers and readers record
// every operation, heals, drains and checks the history:
//
//   - history: the operation record (invoke/complete times, outcome);
//   - control: nodes as processes in network namespaces, partitions,
//     packet loss/duplication/slowness, signals, clock offsets, crash points;
//   - nemesis: the faults and the schedule that injects them;
//   - workload: producers, workers (with svcd results), zombies, readers;
//   - checker: total-queue, ack durability, fencing, linearizability
//     (porcupine), divergence, and, on a cluster of several Raft groups
//     (jepsen run --groups N), all of them again group by group;
//   - report: the summary, results.json and index.html.
//
// cmd/jepsen is the CLI; make jepsen, jepsen-short, jepsen-groups and
// jepsen-bug run it.
package jepsen
