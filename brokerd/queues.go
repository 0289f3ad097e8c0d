package brokerd

import "github.com/raftq/raftq/internal/dispatch"

// QueueSettings are per-queue settings that change while the node runs
// (Config.Queues): brokerd/daemon backs them with live configuration in
// etcd. The node reads them on every enqueue and the leader's dispatcher
// on every lease, so they must answer from memory.
type QueueSettings interface {
	// QueueDefaults returns the defaults of jobs enqueued to queue, given
	// the node's configured ones (Config.Defaults).
	QueueDefaults(queue string, configured Defaults) Defaults
	// QueueLimit and Changed are the dispatcher's per-queue caps and
	// rates (dispatch.Limits).
	dispatch.Limits
}

// queueDefaults are the job defaults of queue q: Config.Queues' over the
// node's configured Defaults.
func (n *Node) queueDefaults(q string) Defaults {
	if n.cfg.Queues == nil {
		return n.cfg.Defaults
	}
	return n.cfg.Queues.QueueDefaults(q, n.cfg.Defaults)
}

// dispatchLimits is what the leader's dispatcher enforces per queue; nil
// without Config.Queues.
func (n *Node) dispatchLimits() dispatch.Limits {
	if n.cfg.Queues == nil {
		return nil
	}
	return n.cfg.Queues
}
