package fsm

import "math"

// Backoff is the retry delay (ns) of a nacked job that asked for none:
// InitialBackoff doubled per attempt after the first, capped at MaxBackoff
// (no cap when MaxBackoff <= 0), then jittered into [d/2, d] so that jobs
// failing together do not retry together.
//
// The jitter is a hash of (ID, Attempts), not a random number, because
// Apply runs on every replica and all must compute the same delay. j is the
// job as it stands when the lease ends (Attempts counts the failed one).
func Backoff(j *Job) int64 {
	d := j.InitialBackoff
	if d <= 0 {
		return 0
	}
	limit := j.MaxBackoff
	if limit <= 0 {
		limit = math.MaxInt64
	}
	shift := int64(j.Attempts) - 1
	if shift < 0 {
		shift = 0
	}
	if shift >= 63 || d > limit>>shift {
		d = limit
	} else {
		d <<= shift
		if d > limit {
			d = limit
		}
	}
	half := d / 2
	return half + int64(jitterHash(j.ID, j.Attempts)%uint64(half+1))
}

// jitterHash is FNV-1a (64 bit) over id and the four little-endian bytes of
// attempts, written out so that it allocates nothing.
func jitterHash(id string, attempts int32) uint64 {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	for i := 0; i < len(id); i++ {
		h ^= uint64(id[i])
		h *= prime
	}
	a := uint32(attempts)
	for i := 0; i < 4; i++ {
		h ^= uint64(byte(a >> (8 * i)))
		h *= prime
	}
	return h
}
