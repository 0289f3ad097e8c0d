package brokerd

import (
	"errors"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/raftq/raftq/fsm"
	"github.com/raftq/raftq/internal/apierr"
	"github.com/raftq/raftq/internal/limits"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// fuzzRequests are the request kinds FuzzValidateRequests decodes into,
// in the order of its kind byte.
var fuzzRequests = []func() proto.Message{
	func() proto.Message { return &raftqv1.EnqueueRequest{} },
	func() proto.Message { return &raftqv1.FetchRequest{} },
	func() proto.Message { return &raftqv1.ExtendLeaseRequest{} },
	func() proto.Message { return &raftqv1.AckRequest{} },
	func() proto.Message { return &raftqv1.NackRequest{} },
	func() proto.Message { return &raftqv1.QueueStatsRequest{} },
	func() proto.Message { return &raftqv1.RedriveRequest{} },
	func() proto.Message { return &raftqv1.PurgeDeadRequest{} },
	func() proto.Message { return &raftqv1.ListJobsRequest{} },
	func() proto.Message { return &raftqv1.JoinRequest{} },
}

func fuzzSeeds() []proto.Message {
	return []proto.Message{
		&raftqv1.EnqueueRequest{Jobs: []*raftqv1.JobSpec{{Queue: "orders", Type: "email", Payload: []byte("hi"), Priority: 3,
			Delay: durationpb.New(time.Second), MaxAttempts: 5, LeaseDuration: durationpb.New(time.Minute), IdempotencyKey: "k",
			Retry: &raftqv1.RetryPolicy{InitialBackoff: durationpb.New(time.Second), MaxBackoff: durationpb.New(time.Hour)}}}},
		&raftqv1.EnqueueRequest{Jobs: []*raftqv1.JobSpec{{Queue: "q", Type: "t", RunAt: &timestamppb.Timestamp{Seconds: -62135596800}}}},
		&raftqv1.FetchRequest{Queues: []string{"a", "b", "a"}, MaxJobs: 10, MaxWait: durationpb.New(time.Second), WorkerId: "w", LeaseDuration: durationpb.New(time.Minute)},
		&raftqv1.ExtendLeaseRequest{JobId: "j", LeaseToken: 9, ExtendBy: durationpb.New(time.Minute)},
		&raftqv1.AckRequest{JobId: "j", LeaseToken: 9},
		&raftqv1.NackRequest{JobId: "j", LeaseToken: 9, Error: "boom", RetryAfter: durationpb.New(time.Second), Permanent: true},
		&raftqv1.QueueStatsRequest{Queues: []string{"q"}},
		&raftqv1.RedriveRequest{Queue: "q", JobIds: []string{"a"}, Limit: 10},
		&raftqv1.PurgeDeadRequest{Queue: "q", Limit: 10},
		&raftqv1.ListJobsRequest{Queue: "q", State: raftqv1.JobState_JOB_STATE_DEAD, Limit: 10, After: "x"},
		&raftqv1.JoinRequest{NodeId: "n4", RaftAddr: "127.0.0.1:7204", GrpcAddr: "127.0.0.1:7104"},
	}
}

// FuzzValidateRequests feeds arbitrary bytes, decoded as each request of
// the gRPC API, to its validation. Nothing may panic; every refusal must
// be a definite invalid-argument or too-large error (never an internal
// one); and what is accepted must keep the limits the FSM and the
// dispatcher rely on (names, sizes, durations, counts).
func FuzzValidateRequests(f *testing.F) {
	for _, m := range fuzzSeeds() {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(kindOf(m), b)
	}
	f.Add(uint8(0), []byte{0x0a, 0x00})
	f.Add(uint8(1), []byte{0x0a, 0x01, 0x2f})
	f.Add(uint8(4), []byte{0x22, 0x04, 0x08, 0xff, 0xff, 0x7f})
	lim := DefaultConfig().Limits
	lim.MaxBatchJobs, lim.MaxPayloadBytes, lim.MaxBatchBytes, lim.MaxFetchJobs = 8, 64, 256, 16
	defaults := func(string) Defaults { return DefaultConfig().Defaults }
	now := time.Unix(1_700_000_000, 0)
	f.Fuzz(func(t *testing.T, kind uint8, data []byte) {
		m := fuzzRequests[int(kind)%len(fuzzRequests)]()
		if err := proto.Unmarshal(data, m); err != nil {
			return // gRPC refuses undecodable messages before any handler
		}
		err := validateOne(t, lim, defaults, now, m)
		if err != nil && !errors.Is(err, apierr.ErrInvalid) && !errors.Is(err, apierr.ErrTooLarge) {
			t.Fatalf("%T refused with an error that is not a definite invalid argument: %v", m, err)
		}
	})
}

// kindOf is the kind byte of a request's type.
func kindOf(m proto.Message) uint8 {
	for i, mk := range fuzzRequests {
		if mk().ProtoReflect().Descriptor() == m.ProtoReflect().Descriptor() {
			return uint8(i)
		}
	}
	panic("no fuzz kind for " + string(m.ProtoReflect().Descriptor().FullName()))
}

func validName(s string) bool { return limits.CheckName("x", s) == nil }

// validateOne runs m's validation and checks what it accepted.
func validateOne(t *testing.T, lim Limits, defaults func(string) Defaults, now time.Time, m proto.Message) error {
	switch r := m.(type) {
	case *raftqv1.EnqueueRequest:
		jobs, err := validateEnqueue(lim, defaults, r, now)
		if err != nil {
			return err
		}
		total := 0
		if len(jobs) != len(r.Jobs) || len(jobs) == 0 || len(jobs) > lim.MaxBatchJobs {
			t.Fatalf("accepted %d jobs of %d", len(jobs), len(r.Jobs))
		}
		for _, j := range jobs {
			total += len(j.Payload)
			if !validName(j.Queue) || !validName(j.Type) || len(j.Payload) > lim.MaxPayloadBytes || j.Id == "" ||
				j.MaxAttempts <= 0 || j.MaxAttempts > max(lim.MaxAttempts, defaults(j.Queue).MaxAttempts) ||
				time.Duration(j.LeaseDuration) < lim.MinLeaseDuration || time.Duration(j.LeaseDuration) > lim.MaxLeaseDuration ||
				j.InitialBackoff < 0 || j.MaxBackoff < j.InitialBackoff || j.DedupWindow < 0 || time.Duration(j.DedupWindow) > lim.MaxDedupWindow ||
				j.RunAt > now.Add(lim.MaxDelay).UnixNano() || j.RunAt < now.Add(-lim.MaxDelay).UnixNano() ||
				len(j.IdempotencyKey) > lim.MaxIdempotencyKey {
				t.Fatalf("accepted a job outside the limits: %v", j)
			}
		}
		if total > lim.MaxBatchBytes {
			t.Fatalf("accepted %d payload bytes in one batch", total)
		}
		if _, err := linkWorkflow(r, jobs); err != nil {
			return err
		}
		for _, j := range jobs {
			if len(j.DependsOn) > fsm.MaxParents || slices.Contains(j.DependsOn, j.Id) {
				t.Fatalf("accepted a job with parents %v", j.DependsOn)
			}
		}
	case *raftqv1.FetchRequest:
		fr, err := validateFetch(lim, r)
		if err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, q := range fr.Queues {
			if !validName(q) || seen[q] {
				t.Fatalf("accepted queue %q (duplicate: %v)", q, seen[q])
			}
			seen[q] = true
		}
		if len(fr.Queues) == 0 || fr.Max < 1 || fr.Max > lim.MaxFetchJobs || fr.Wait < 0 || fr.Wait > lim.MaxFetchWait ||
			(fr.LeaseDuration != 0 && (fr.LeaseDuration < lim.MinLeaseDuration || fr.LeaseDuration > lim.MaxLeaseDuration)) {
			t.Fatalf("accepted a fetch outside the limits: %+v", fr)
		}
	case *raftqv1.ExtendLeaseRequest:
		ref, err := validateExtend(lim, r)
		if err != nil {
			return err
		}
		if ref.JobId == "" || ref.Token == 0 || ref.Duration < 0 || time.Duration(ref.Duration) > lim.MaxLeaseDuration {
			t.Fatalf("accepted %v", ref)
		}
	case *raftqv1.AckRequest:
		ref, err := validateAck(r)
		if err != nil {
			return err
		}
		if ref.JobId == "" || len(ref.JobId) > maxJobIDBytes || ref.Token == 0 {
			t.Fatalf("accepted %v", ref)
		}
	case *raftqv1.NackRequest:
		it, err := validateNack(lim, r)
		if err != nil {
			return err
		}
		if it.JobId == "" || it.Token == 0 || len(it.Error) > maxNackErrBytes || it.RetryAfter < -1 || time.Duration(it.RetryAfter) > lim.MaxDelay {
			t.Fatalf("accepted %v", it)
		}
	case *raftqv1.QueueStatsRequest:
		if err := validateQueueStats(r); err != nil {
			return err
		}
		for _, q := range r.Queues {
			if !validName(q) {
				t.Fatalf("accepted queue %q", q)
			}
		}
	case *raftqv1.RedriveRequest:
		if err := validateRedrive(r); err != nil {
			return err
		}
		checkIDs(t, r.Queue, r.JobIds, r.Limit)
	case *raftqv1.PurgeDeadRequest:
		if err := validatePurgeDead(r); err != nil {
			return err
		}
		checkIDs(t, r.Queue, r.JobIds, r.Limit)
	case *raftqv1.ListJobsRequest:
		n, err := validateListJobs(r)
		if err != nil {
			return err
		}
		if !validName(r.Queue) || n < 1 || n > maxListJobs || r.State == raftqv1.JobState_JOB_STATE_UNSPECIFIED {
			t.Fatalf("accepted %v (limit %d)", r, n)
		}
	case *raftqv1.JoinRequest:
		if err := validateJoin(r); err != nil {
			return err
		}
		if validateNodeID(r.NodeId, true) != nil || r.RaftAddr == "" || r.GrpcAddr == "" {
			t.Fatalf("accepted %v", r)
		}
	}
	return nil
}

func checkIDs(t *testing.T, queue string, ids []string, limit int32) {
	if !validName(queue) || len(ids) > maxIDList || limit < 0 || limit > maxIDList {
		t.Fatalf("accepted queue %q, %d ids, limit %d", queue, len(ids), limit)
	}
	for _, id := range ids {
		if id == "" || len(id) > maxJobIDBytes {
			t.Fatalf("accepted job id %q", id)
		}
	}
}
