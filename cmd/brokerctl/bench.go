package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/raftq/raftq/client"
	"github.com/raftq/raftq/internal/placement"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// latencies collects samples from many goroutines.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

func (l *latencies) pct(p float64) float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return 0
	}
	sort.Slice(l.d, func(i, j int) bool { return l.d[i] < l.d[j] })
	i := int(float64(len(l.d)-1) * p)
	return float64(l.d[i].Microseconds()) / 1000
}

// emit prints one figure as a JSON line, whatever -o says: bench output
// is for scripts and for comparing runs.
func emit(w io.Writer, m map[string]any) {
	m["cores"] = runtime.NumCPU()
	b, _ := json.Marshal(m)
	fmt.Fprintln(w, string(b))
}

type benchOpts struct {
	producers, batch, workers, fetchBatch, payload, clients int
	jobs                                                    int64 // enqueue: stop after this many (0: run for duration)
	duration                                                time.Duration
	queue                                                   string
	// queues spreads producers and workers round robin over this many
	// queues (names: queue, then queue-1, ...; see benchQueues).
	queues int
	names  []string
	// groups is the cluster's Raft group count, as its Status says.
	groups int
	out    io.Writer // the command's stdout
	// stream sends single jobs with EnqueueOne (pipelined over
	// EnqueueStream) instead of Enqueue; ackBatch acks each fetched batch
	// with one AckBatch call instead of one Ack per job.
	stream, ackBatch bool
	// consume makes each e2e worker take jobs from a Consume stream
	// holding --fetch-batch credit instead of Fetch long polls.
	consume bool
	// partition spreads each bench queue over every Raft group of the
	// cluster (Admin PartitionQueue) before the run.
	partition bool
	// cpuProfile is where to write bench's own CPU profile, if anywhere.
	cpuProfile string
}

func benchCmd(g *globals) *cobra.Command {
	o := &benchOpts{}
	cmd := &cobra.Command{
		Use:   "bench enqueue|e2e",
		Short: "Measure a cluster: durable enqueue rate and latency, or end-to-end enqueue→fetch→ack",
		Long: `bench prints one JSON line per run.

  enqueue: producers enqueue batches of --batch jobs as fast as each answer comes back.
  e2e:     producers enqueue while --workers fetch up to --fetch-batch jobs and ack each one
           (acks are durable: each waits for its Raft commit); reports acked jobs/s and the
           enqueue-to-fetch latency.

  By default bench takes the paths the Go SDK takes: with --batch 1 producers call
  EnqueueOne, pipelined over the client's EnqueueStream (--batch N sends atomic batches
  with Enqueue); e2e workers take jobs from a Consume stream with --fetch-batch credit,
  granting a credit back for each job acked, and ack each batch with one AckBatch call.
  --stream=false sends single jobs with unary Enqueue calls; --consume=false has the
  workers long-poll with Fetch; --ack-batch=false acks each job with its own Ack.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.out = cmd.OutOrStdout()
			if o.batch != 1 {
				if cmd.Flags().Changed("stream") && o.stream {
					return fmt.Errorf("--stream sends single jobs: use --batch 1")
				}
				o.stream = false // a batch is one atomic Enqueue
			}
			if o.queue == "" {
				o.queue = fmt.Sprintf("bench-%d", time.Now().UnixNano())
			}
			if o.cpuProfile != "" {
				// The client's own cost: on one machine it shares the
				// cores with the brokers it measures.
				pf, err := os.Create(o.cpuProfile)
				if err != nil {
					return err
				}
				defer pf.Close()
				if err := pprof.StartCPUProfile(pf); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			var clients []*client.Client
			for i := 0; i < o.clients; i++ {
				cl, err := g.client()
				if err != nil {
					return err
				}
				defer cl.Close()
				clients = append(clients, cl)
			}
			if err := benchQueues(clients[0], o); err != nil {
				return err
			}
			switch args[0] {
			case "enqueue":
				return benchEnqueue(clients, o)
			case "e2e":
				return benchE2E(clients, o)
			}
			return fmt.Errorf("unknown bench %q: want enqueue or e2e", args[0])
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.producers, "producers", 1, "concurrent producers")
	f.IntVar(&o.batch, "batch", 1, "jobs per Enqueue call")
	f.IntVar(&o.workers, "workers", 8, "workers (e2e)")
	f.IntVar(&o.fetchBatch, "fetch-batch", 32, "max jobs per Fetch (e2e)")
	f.IntVar(&o.payload, "payload", 256, "payload bytes")
	f.IntVar(&o.clients, "clients", 4, "client connections to spread goroutines over")
	f.DurationVar(&o.duration, "duration", 10*time.Second, "how long to produce")
	f.Int64Var(&o.jobs, "jobs", 0, "enqueue: stop once this many jobs are enqueued, or after --duration (fills a backlog)")
	f.StringVar(&o.queue, "queue", "", "queue to use (default: a fresh one)")
	f.IntVar(&o.queues, "queues", 1, "queues to spread producers and workers over, round robin; on a cluster of several Raft groups, queue i is chosen in group i mod the group count")
	f.BoolVar(&o.partition, "partition", false, "partition each queue over every Raft group first (a fresh queue: without --queue)")
	// The defaults are the SDK's own paths (EnqueueOne, the worker's
	// Consume stream and coalesced AckBatch), so the figures are what an
	// application built on the SDK gets; the older paths stay measurable.
	f.BoolVar(&o.stream, "stream", true, "produce single jobs over EnqueueStream (EnqueueOne) when --batch is 1; false: unary Enqueue calls")
	f.BoolVar(&o.ackBatch, "ack-batch", true, "ack each fetched batch with one AckBatch call (e2e); false: one Ack per job")
	f.StringVar(&o.cpuProfile, "cpuprofile", "", "write bench's own CPU profile (the client side: go tool pprof) to this file")
	f.BoolVar(&o.consume, "consume", true, "workers take jobs from Consume streams (e2e); false: Fetch long polls")
	return cmd
}

func payload(n int) []byte {
	if n < 8 {
		n = 8
	}
	p := make([]byte, n)
	binary.BigEndian.PutUint64(p, uint64(time.Now().UnixNano()))
	return p
}

// produce runs producers until stop, recording per-call latency.
func produce(clients []*client.Client, o *benchOpts, stop <-chan struct{}, lat *latencies, jobs, errs *atomic.Int64) *sync.WaitGroup {
	var wg sync.WaitGroup
	for p := 0; p < o.producers; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			cl := clients[p%len(clients)]
			for {
				select {
				case <-stop:
					return
				default:
				}
				specs := make([]*raftqv1.JobSpec, o.batch)
				for i := range specs {
					specs[i] = &raftqv1.JobSpec{Queue: o.names[p%len(o.names)], Type: "bench", Payload: payload(o.payload)}
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				start := time.Now()
				var err error
				if o.stream {
					s := specs[0]
					_, _, err = cl.EnqueueOne(ctx, s.Queue, s.Type, s.Payload)
				} else {
					_, err = cl.Enqueue(ctx, specs...)
				}
				cancel()
				if err != nil {
					errs.Add(1)
					fmt.Fprintln(os.Stderr, "enqueue:", err)
					time.Sleep(10 * time.Millisecond)
					continue
				}
				lat.add(time.Since(start))
				if n := jobs.Add(int64(o.batch)); o.jobs > 0 && n >= o.jobs {
					return
				}
			}
		}(p)
	}
	return &wg
}

func benchEnqueue(clients []*client.Client, o *benchOpts) error {
	var lat latencies
	var jobs, errs atomic.Int64
	stop := make(chan struct{})
	start := time.Now()
	wg := produce(clients, o, stop, &lat, &jobs, &errs)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-time.After(o.duration):
	case <-done: // --jobs reached
	}
	close(stop)
	<-done
	el := time.Since(start).Seconds()
	emit(o.out, map[string]any{
		"figure": "durable_enqueue", "producers": o.producers, "batch": o.batch, "payload_bytes": o.payload,
		"jobs": jobs.Load(), "errors": errs.Load(), "seconds": round(el),
		"jobs_per_sec": round(float64(jobs.Load()) / el), "stream": o.stream,
		"call_p50_ms": lat.pct(0.50), "call_p99_ms": lat.pct(0.99),
		"queues": len(o.names), "groups": o.groups, "partitioned": o.partition && o.groups > 1,
	})
	return nil
}

func benchE2E(clients []*client.Client, o *benchOpts) error {
	var enqLat, e2eLat latencies
	var enqueued, errs, acked, ackErrs atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	start := time.Now()
	wg := produce(clients, o, stop, &enqLat, &enqueued, &errs)
	var wwg sync.WaitGroup
	for w := 0; w < o.workers; w++ {
		wwg.Add(1)
		go func(w int) {
			defer wwg.Done()
			cl := clients[w%len(clients)]
			if o.consume {
				benchConsumer(cl, o, w, done, &e2eLat, &acked, &ackErrs)
				return
			}
			for {
				select {
				case <-done:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 35*time.Second)
				jobs, err := cl.Fetch(ctx, &raftqv1.FetchRequest{Queues: []string{o.names[w%len(o.names)]}, MaxJobs: int32(o.fetchBatch),
					MaxWait: durationpb.New(200 * time.Millisecond), WorkerId: fmt.Sprintf("bench-%d", w)})
				cancel()
				if err != nil {
					fmt.Fprintln(os.Stderr, "fetch:", err)
					time.Sleep(10 * time.Millisecond)
					continue
				}
				now := time.Now()
				for _, j := range jobs {
					if len(j.Payload) >= 8 {
						e2eLat.add(now.Sub(time.Unix(0, int64(binary.BigEndian.Uint64(j.Payload)))))
					}
				}
				if o.ackBatch {
					if len(jobs) > 0 {
						n, failed := ackBatch(cl, jobs)
						acked.Add(n)
						ackErrs.Add(failed)
					}
					continue
				}
				ackEach(cl, jobs, &acked, &ackErrs)
			}
		}(w)
	}
	time.Sleep(o.duration)
	ackedInWindow := acked.Load()
	window := time.Since(start).Seconds()
	close(stop)
	wg.Wait()
	// Drain what is left so the queue ends empty.
	deadline := time.Now().Add(60 * time.Second)
	for acked.Load() < enqueued.Load() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	total := time.Since(start).Seconds()
	close(done)
	wwg.Wait()
	emit(o.out, map[string]any{
		"figure": "end_to_end", "producers": o.producers, "batch": o.batch, "workers": o.workers, "fetch_batch": o.fetchBatch,
		"payload_bytes": o.payload, "enqueued": enqueued.Load(), "acked": acked.Load(), "enqueue_errors": errs.Load(), "ack_errors": ackErrs.Load(),
		"acked_per_sec_while_producing": round(float64(ackedInWindow) / window),
		"acked_per_sec_overall":         round(float64(acked.Load()) / total),
		"enqueue_to_fetch_p50_ms":       e2eLat.pct(0.50), "enqueue_to_fetch_p99_ms": e2eLat.pct(0.99),
		"enqueue_call_p50_ms": enqLat.pct(0.50), "stream": o.stream, "ack_batch": o.ackBatch, "consume": o.consume,
		"queues": len(o.names), "groups": o.groups, "partitioned": o.partition && o.groups > 1,
	})
	return nil
}

// ackEach acks jobs with one Ack call each, all at once.
func ackEach(cl *client.Client, jobs []*raftqv1.Job, acked, ackErrs *atomic.Int64) {
	var awg sync.WaitGroup
	for _, j := range jobs {
		awg.Add(1)
		go func(j *raftqv1.Job) {
			defer awg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := cl.Ack(ctx, j.Id, j.LeaseToken); err != nil {
				ackErrs.Add(1)
				fmt.Fprintln(os.Stderr, "ack:", err)
				return
			}
			acked.Add(1)
		}(j)
	}
	awg.Wait()
}

// benchConsumer is one e2e worker on Consume streams: the stream holds
// --fetch-batch credit; the jobs that arrived together are acked together
// (one AckBatch with --ack-batch) and their credit granted back. A stream
// that ends (a leader change) is opened again.
func benchConsumer(cl *client.Client, o *benchOpts, w int, done <-chan struct{}, e2eLat *latencies, acked, ackErrs *atomic.Int64) {
	dctx := contextFromDone(done)
	for {
		select {
		case <-done:
			return
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 35*time.Second)
		s, err := cl.Consume(ctx, &raftqv1.ConsumeOpen{Queues: []string{o.names[w%len(o.names)]}, WorkerId: fmt.Sprintf("bench-%d", w), Credit: int32(o.fetchBatch)})
		cancel()
		if err != nil {
			fmt.Fprintln(os.Stderr, "consume:", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		jobs := make(chan *raftqv1.Job, o.fetchBatch)
		ended := make(chan error, 1)
		go func() {
			defer close(jobs)
			for {
				r, err := s.Recv()
				if err != nil {
					ended <- err
					return
				}
				if j := r.GetJob(); j != nil {
					jobs <- j // never blocks: at most the credit is pushed
				}
			}
		}()
		stop := context.AfterFunc(dctx, s.Close)
		for j := range jobs {
			batch := []*raftqv1.Job{j}
		more:
			for len(batch) < o.fetchBatch {
				select {
				case j, ok := <-jobs:
					if !ok {
						break more
					}
					batch = append(batch, j)
				default:
					break more
				}
			}
			now := time.Now()
			for _, j := range batch {
				if len(j.Payload) >= 8 {
					e2eLat.add(now.Sub(time.Unix(0, int64(binary.BigEndian.Uint64(j.Payload)))))
				}
			}
			if o.ackBatch {
				n, failed := ackBatch(cl, batch)
				acked.Add(n)
				ackErrs.Add(failed)
			} else {
				ackEach(cl, batch, acked, ackErrs)
			}
			_ = s.Credit(int32(len(batch))) // a broken stream says why in Recv
		}
		stop()
		s.Close()
		if err := <-ended; err != nil && !isDone(done) {
			fmt.Fprintln(os.Stderr, "consume stream ended:", err)
		}
	}
}

// contextFromDone is a context cancelled when done closes.
func contextFromDone(done <-chan struct{}) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-done
		cancel()
	}()
	return ctx
}

func isDone(done <-chan struct{}) bool {
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// ackBatch acks jobs with one AckBatch call and counts the acked and
// the refused ones.
func ackBatch(cl *client.Client, jobs []*raftqv1.Job) (acked, failed int64) {
	items := make([]*raftqv1.AckRequest, len(jobs))
	for i, j := range jobs {
		items[i] = &raftqv1.AckRequest{JobId: j.Id, LeaseToken: j.LeaseToken}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errs, err := cl.AckBatch(ctx, items)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ack batch:", err)
		return 0, int64(len(jobs))
	}
	for _, e := range errs {
		if e != nil {
			fmt.Fprintln(os.Stderr, "ack:", e)
			failed++
			continue
		}
		acked++
	}
	return acked, failed
}

func round(f float64) float64 { return float64(int64(f*10)) / 10 }

// benchQueues names the queues a bench spreads its load over. On a
// cluster of several Raft groups it picks names so that queue i is in
// group i mod the group count: the load then reaches every group evenly
// (names are placed by hash, so consecutive names would not).
func benchQueues(cl *client.Client, o *benchOpts) error {
	if o.queues < 1 {
		return fmt.Errorf("--queues %d: want at least 1", o.queues)
	}
	o.groups = 1
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, addr := range cl.Addrs() {
		if st, err := cl.Status(ctx, addr); err == nil {
			o.groups = max(1, int(st.GetGroupCount()))
			break
		}
	}
	// Queue i in group i mod the group count (one list per round of
	// groups, each list's names distinct).
	o.names = nil
	for round := 0; len(o.names) < o.queues; round++ {
		prefix := o.queue
		if round > 0 {
			prefix = fmt.Sprintf("%s-r%d", o.queue, round)
		}
		for _, q := range placement.QueuesPerGroup(prefix, o.groups) {
			if len(o.names) < o.queues {
				o.names = append(o.names, q)
			}
		}
	}
	if o.partition && o.groups > 1 {
		all := make([]uint32, o.groups)
		for g := range all {
			all[g] = uint32(g)
		}
		for _, q := range o.names {
			if _, err := cl.PartitionQueue(ctx, q, all...); err != nil {
				return fmt.Errorf("--partition %s: %w", q, err)
			}
		}
	}
	return nil
}
