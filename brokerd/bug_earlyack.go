//go:build jepsenbug

package brokerd

import (
	"context"
	"time"

	"github.com/raftq/raftq/fsm/fsmpb"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// bugEarlyEnqueue, with early-enqueue-ack, answers an Enqueue OK before
// anything is committed and proposes the jobs 300 ms later in the
// background (the "ack before fsync" bug): jobs in flight when the leader
// dies or steps down are lost although their producers were told OK. The
// queue checker must report them lost.
func (n *Node) bugEarlyEnqueue(jobs []*fsmpb.NewJob) (*raftqv1.EnqueueResponse, bool) {
	if !bugOn("early-enqueue-ack") {
		return nil, false
	}
	out := &raftqv1.EnqueueResponse{Results: make([]*raftqv1.EnqueueResult, len(jobs))}
	for i, j := range jobs {
		out.Results[i] = &raftqv1.EnqueueResult{JobId: j.Id}
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		n.prop.Propose(context.Background(), &fsmpb.Command{
			Type: fsmpb.CommandType_COMMAND_TYPE_ENQUEUE,
			Body: &fsmpb.Command_Enqueue{Enqueue: &fsmpb.Enqueue{Jobs: jobs}},
		})
	}()
	return out, true
}
