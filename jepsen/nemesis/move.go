package nemesis

import (
	"context"
	"fmt"
	"time"

	"github.com/raftq/raftq/internal/placement"
	"github.com/raftq/raftq/jepsen/history"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// moveQueue moves one of the harness's queues to another Raft group
// (Admin MoveQueue) while producers and workers run: the old group is
// sealed, new jobs go to the new group, and the old group's jobs are
// served until none is left (docs/scale-out.md, "Moving a queue"). It
// records a "move" op naming the queue's hash group and the group it
// went to, so the groups checker accepts jobs of either (and still
// fails on any other group). A queue whose last move is still under way
// is left alone. Nothing to heal: the move finishes on its own, and
// other faults (kills, partitions of group 0's leader) hit it meanwhile.
func moveQueue(ctx context.Context, e *Env) (string, Heal, error) {
	if e.Groups < 2 {
		return "one group: nothing to move", noHeal, nil
	}
	queues := e.W.Queues()
	q := queues[e.Rng.Intn(len(queues))]
	home := placement.Queue(q, e.Groups)
	var last error
	for _, n := range e.shuffled() {
		cc, err := e.C.Conn(n)
		if err != nil {
			last = err
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		adm := raftqv1.NewAdminClient(cc)
		ls, err := adm.ListPlacements(cctx, &raftqv1.ListPlacementsRequest{})
		if err != nil {
			cancel()
			last = err
			continue
		}
		cur := home
		for _, p := range ls.GetPlacements() {
			if p.GetQueue() != q {
				continue
			}
			if p.GetPhase() != "done" {
				cancel()
				return fmt.Sprintf("queue %s is still moving from group %d to %d (%d left): no new move", q, p.GetFromGroup(), p.GetGroup(), p.GetLeftInFromGroup()), noHeal, nil
			}
			cur = p.GetGroup()
		}
		to := (cur + 1 + uint32(e.Rng.Intn(e.Groups-1))) % uint32(e.Groups)
		// Recorded before the call: a job answered from the new group
		// can only end after the move began.
		start := e.Rec.Now()
		e.Rec.Add(history.Op{Process: -1, Kind: history.Nemesis, Status: history.OK, Start: start, End: start,
			Family: "move", Group: home, MoveTo: []uint32{to},
			Value: fmt.Sprintf("move/queue: %s (hash group %d) from group %d to group %d", q, home, cur, to)})
		_, err = adm.MoveQueue(cctx, &raftqv1.MoveQueueRequest{Queue: q, ToGroup: to})
		cancel()
		if err != nil {
			// It may have started anyway (an indeterminate answer): the
			// record above already allows the new group.
			last = err
			continue
		}
		return fmt.Sprintf("queue %s (hash group %d) from group %d to group %d via %s", q, home, cur, to, n.ID), noHeal, nil
	}
	return "", noHeal, fmt.Errorf("move of %s: no node answered: %v", q, last)
}
