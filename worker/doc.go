// Package worker is the raftq worker SDK: it leases jobs from a raftq broker
// cluster, runs them with the handlers you register, and settles each
// attempt (ack or nack) under the rules that make the broker's guarantees
// hold end to end.
//
// What the worker does for you:
//
//   - Consume: one stream per queue to the leader, granting as much credit
//     as the queue has free slots (Options.Queues[i].Concurrency); the
//     broker pushes leased jobs up to the credit, and pushes the cancel (or
//     the loss of the lease) of a job it pushed. A broker without Consume,
//     or Options.UseFetch, gets Fetch instead: one long-poll loop per
//     queue, asking for at most as many jobs as free slots, up to
//     Options.FetchBatch per call. Either way no job waits in a local
//     buffer while its lease runs out.
//   - Lease keeping: while a handler runs, its lease is extended at a third
//     of the lease duration, and a fetched job's cancel flag is read every
//     Options.CancelPoll. The handler's context is cancelled when the broker
//     refuses the lease (ErrLeaseLost), the job is cancelled
//     (ErrJobCancelled), the lease deadline passes with no extension
//     confirmed (ErrLeaseExpired), or shutdown runs out of time
//     (ErrShutdown); context.Cause tells which.
//   - Settling: a nil error acks; Permanent(err) dead-letters at once;
//     RetryAfter(err, d) retries after d; any other error retries after the
//     job's back-off; a panic is recovered and nacked with its message.
//     The outcome goes to the Recorder (the results service) before the
//     ack, and a job whose lease the worker knows it lost is never acked.
//   - Failover: every broker call goes through a client.Client, which
//     follows NOT_LEADER hints and rotates over the known brokers with
//     back-off; acks and nacks use contexts that survive shutdown and are
//     retried through a failover, each job's own too when the batch it
//     went in spans Raft groups and only its group's leader was moving.
//   - Shutdown: cancelling Run's context stops fetching, lets in-flight jobs
//     finish for Options.ShutdownTimeout, then nacks the rest with no
//     back-off so other workers take them at once.
//   - Observability: Use adds middlewares (logging, tracing, timeouts);
//     Options.Registerer gets Prometheus metrics per queue and job type;
//     Options.OnSettle sees every settlement.
//
// Delivery is at least once: a job may run more than once (a worker that
// dies mid-job, a fetch answer lost in a failover), but it is acked at
// most once, and only by the holder of its current lease. Handlers should
// be idempotent, or record their effects under the job's LeaseToken.
//
// See DESIGN.md in this directory for the reasoning and measured figures.
package worker
