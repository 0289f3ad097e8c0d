package limits

import (
	"fmt"
	"time"
)

// Broker bounds what one request to a broker node may ask for, and what
// callers may hold on it at once (brokerd.Config.Limits). The request
// limits are enforced by the API on the leader before anything is proposed; the FSM does not enforce them,
// since nodes configured differently must still apply the log identically.
type Broker struct {
	MaxPayloadBytes   int
	MaxBatchJobs      int
	MaxBatchBytes     int
	MaxFetchJobs      int
	MaxFetchWait      time.Duration
	MaxLeaseDuration  time.Duration
	MinLeaseDuration  time.Duration
	MaxAttempts       int32
	MaxIdempotencyKey int
	MaxDedupWindow    time.Duration
	MaxDelay          time.Duration

	// MaxSettleItems caps the items of one AckBatch, NackBatch or
	// ExtendLeaseBatch: they all go into one Raft entry.
	MaxSettleItems int
	// MaxStreamWindow caps the jobs of one EnqueueStream that are read
	// but not yet answered; the leader stops reading while it is full.
	MaxStreamWindow int

	// MaxWaitersPerConn caps the Fetch long polls one client connection
	// may have parked (forwarded calls from other nodes are exempt: a
	// follower forwards all its clients over one connection).
	MaxWaitersPerConn int
	// MaxRequestTime caps how long a unary call may run (a Fetch may wait
	// MaxFetchWait on top): no request holds the server forever.
	MaxRequestTime time.Duration
	// MaxRestoreBytes caps a backup uploaded through Cluster.Restore (it
	// is spooled to the data dir first).
	MaxRestoreBytes int64
	// MaxConcurrentStreams caps the calls in flight on one connection (0:
	// unbounded); see GRPC.
	MaxConcurrentStreams uint32

	// Caps on what callers hold at once (0: no cap), so no caller, and
	// not all together, can take a node's memory. A call over a cap is
	// RESOURCE_EXHAUSTED naming the cap's key and changes nothing.
	// Per-principal caps apply with auth on (public calls, such as health
	// Watch, share the budget of Anonymous).
	//
	// MaxWaitersPerPrincipal and MaxWaiters cap parked Fetches per
	// principal and on the node (forwarded calls are counted on the node
	// the client called, like MaxWaitersPerConn).
	MaxWaitersPerPrincipal int
	MaxWaiters             int
	// MaxStreamsPerPrincipal and MaxStreams cap streaming calls (health
	// Watch, Snapshot, Restore, reflection, EnqueueStream: the Go client
	// keeps one per broker connection and falls back to Enqueue when
	// refused; Consume: the worker SDK keeps one per queue and falls back
	// to Fetch when refused).
	MaxStreamsPerPrincipal int
	MaxStreams             int
	// MaxConns and MaxConnsPerIP cap the gRPC API's open connections; a
	// connection over them is closed when accepted.
	MaxConns      int
	MaxConnsPerIP int
}

// DefaultBroker is a broker node's default limits (brokerd.DefaultConfig
// and the limits.* keys of cmd/brokerd).
func DefaultBroker() Broker {
	return Broker{
		MaxPayloadBytes:   1 << 20,
		MaxBatchJobs:      1000,
		MaxBatchBytes:     8 << 20,
		MaxFetchJobs:      1000,
		MaxFetchWait:      5 * time.Minute,
		MaxLeaseDuration:  12 * time.Hour,
		MinLeaseDuration:  100 * time.Millisecond,
		MaxAttempts:       1000,
		MaxIdempotencyKey: 256,
		MaxDedupWindow:    7 * 24 * time.Hour,
		MaxDelay:          365 * 24 * time.Hour,
		MaxRequestTime:    time.Minute,
		MaxRestoreBytes:   4 << 30,
		MaxSettleItems:    1000,
		MaxStreamWindow:   256,

		MaxWaitersPerConn:      DefaultMaxWaitersPerConn,
		MaxWaitersPerPrincipal: DefaultMaxWaitersPerPrincipal,
		MaxWaiters:             DefaultMaxWaiters,
		MaxStreamsPerPrincipal: DefaultMaxStreamsPerPrincipal,
		MaxStreams:             DefaultMaxStreams,
		MaxConns:               DefaultMaxConns,
		MaxConnsPerIP:          DefaultMaxConnsPerIP,
	}
}

// CheckQueueDefaults refuses per-queue job defaults (live config) that the
// API under b would refuse in a request, so that a bad value cannot make
// every enqueue to the queue fail. Zero means unset.
func (b Broker) CheckQueueDefaults(leaseDuration time.Duration, maxAttempts int32) error {
	if leaseDuration != 0 && (leaseDuration < b.MinLeaseDuration || leaseDuration > b.MaxLeaseDuration) {
		return fmt.Errorf("lease_duration: must be between %s and %s", b.MinLeaseDuration, b.MaxLeaseDuration)
	}
	if maxAttempts > b.MaxAttempts {
		return fmt.Errorf("max_attempts: must be at most %d", b.MaxAttempts)
	}
	return nil
}
