package nemesis

import (
	"context"
	"strings"
	"time"

	"github.com/raftq/raftq/jepsen/history"
)

// Schedule says when faults happen.
type Schedule struct {
	// Quiet is the fault-free start.
	Quiet time.Duration
	// Fault is how long a fault holds (random mode: between half and one
	// and a half times this); Rest the fault-free period after each heal.
	Fault, Rest time.Duration
	// Total bounds the faulty part in random mode.
	Total time.Duration
	// Sequential (the short run) injects every selected fault once, alone,
	// in order; otherwise faults are drawn at random, up to MaxMix of the
	// non-exclusive ones at once, until Total has passed.
	Sequential bool
	MaxMix     int
}

// Run runs the schedule over faults and returns when the last fault is
// healed; HealAll is the caller's to run afterwards.
func Run(ctx context.Context, e *Env, s Schedule, faults []Fault) {
	sleep(ctx, s.Quiet)
	if s.Sequential {
		for _, f := range faults {
			if ctx.Err() != nil {
				return
			}
			runFaults(ctx, e, []Fault{f}, s.Fault)
			sleep(ctx, s.Rest)
		}
		return
	}
	end := time.Now().Add(s.Total)
	// Families are dealt from a shuffled deck, so every family comes up
	// once in each round however many faults it has; the fault within the
	// family is random.
	byFamily := map[string][]Fault{}
	var families, deck []string
	for _, f := range faults {
		if byFamily[f.Family] == nil {
			families = append(families, f.Family)
		}
		byFamily[f.Family] = append(byFamily[f.Family], f)
	}
	draw := func() Fault {
		if len(deck) == 0 {
			deck = append(deck, families...)
			e.Rng.Shuffle(len(deck), func(i, j int) { deck[i], deck[j] = deck[j], deck[i] })
		}
		fs := byFamily[deck[0]]
		deck = deck[1:]
		return fs[e.Rng.Intn(len(fs))]
	}
	for time.Now().Before(end) && ctx.Err() == nil {
		pick := []Fault{draw()}
		if !pick[0].Exclusive && s.MaxMix > 1 {
			for tries := 0; tries < 10 && len(pick) < 1+e.Rng.Intn(s.MaxMix); tries++ {
				g := faults[e.Rng.Intn(len(faults))]
				if g.Exclusive || usesFamily(pick, g.Family) || !mixable(append(pick, g)) {
					continue
				}
				pick = append(pick, g)
			}
		}
		hold := s.Fault/2 + time.Duration(e.Rng.Int63n(int64(s.Fault)+1))
		runFaults(ctx, e, pick, hold)
		sleep(ctx, s.Rest/2+time.Duration(e.Rng.Int63n(int64(s.Rest)+1)))
	}
}

// mixable refuses membership changes together with process faults: a
// kill's heal would restart the node the membership change just removed
// and wiped. Partitions, network faults and clocks mix with it (loss under
// membership change plus partitions is a classic).
func mixable(fs []Fault) bool {
	return !usesFamily(fs, "membership") || !(usesFamily(fs, "kill") || usesFamily(fs, "pause") || usesFamily(fs, "workerd"))
}

func usesFamily(fs []Fault, family string) bool {
	for _, f := range fs {
		if f.Family == family {
			return true
		}
	}
	return false
}

// runFaults injects fs, holds them, heals them in reverse order, and
// records one nemesis op per fault spanning injection to heal.
func runFaults(ctx context.Context, e *Env, fs []Fault, hold time.Duration) {
	type active struct {
		f     Fault
		start int64
		desc  string
		heal  Heal
		err   error
	}
	var as []active
	for _, f := range fs {
		start := e.Rec.Now()
		desc, heal, err := f.Inject(ctx, e)
		if heal == nil {
			heal = noHeal
		}
		e.Log.Info("nemesis", "fault", f.ID(), "what", desc, "err", err)
		as = append(as, active{f, start, desc, heal, err})
	}
	sleep(ctx, hold)
	for i := len(as) - 1; i >= 0; i-- {
		a := as[i]
		herr := a.heal(context.Background())
		op := history.Op{Process: -1, Kind: history.Nemesis, Status: history.OK, Start: a.start, End: e.Rec.Now(),
			Family: a.f.Family, Value: a.f.ID() + ": " + a.desc}
		var errs []string
		if a.err != nil {
			errs = append(errs, "inject: "+a.err.Error())
		}
		if herr != nil {
			errs = append(errs, "heal: "+herr.Error())
		}
		if len(errs) > 0 {
			op.Status, op.Error = history.Fail, strings.Join(errs, "; ")
			e.Log.Warn("nemesis error", "fault", a.f.ID(), "err", op.Error)
		}
		e.Rec.Add(op)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
