package auth

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiters is one token bucket per principal. JWT subjects are not a
// closed set, so buckets idle for a while are dropped once there are many.
type limiters struct {
	limit rate.Limit
	burst int

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	lim  *rate.Limiter
	used time.Time
}

// maxBuckets is how many buckets are kept before idle ones are dropped.
const maxBuckets = 10000

// bucketIdle is how long a bucket must be unused to be dropped; by then
// it is full again, so dropping it changes nothing for its principal.
const bucketIdle = 10 * time.Minute

func newLimiters(perSec float64, burst int) *limiters {
	if burst <= 0 {
		burst = max(1, int(perSec))
	}
	return &limiters{limit: rate.Limit(perSec), burst: burst, buckets: map[string]*bucket{}}
}

func (l *limiters) allow(name string) bool {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[name]
	if !ok {
		if len(l.buckets) >= maxBuckets {
			for k, v := range l.buckets {
				if now.Sub(v.used) > bucketIdle {
					delete(l.buckets, k)
				}
			}
		}
		b = &bucket{lim: rate.NewLimiter(l.limit, l.burst)}
		l.buckets[name] = b
	}
	b.used = now
	return b.lim.AllowN(now, 1)
}
