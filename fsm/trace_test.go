package fsm

import "testing"

// The producer's trace context is stored with the job, hashed, kept
// through a lease (the worker reads it from the leased job) and through a
// snapshot. (A job without one stores the same protobuf bytes as before
// the fields existed: proto3 leaves empty strings out, so untraced stores
// hash as they always did; TestHashCoversEveryField covers the fields.)
func TestTraceContextStoredHashedAndSnapshotted(t *testing.T) {
	const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	a, b := newHarness(t), newHarness(t)
	a.one(cmdEnqueue(t0, nj("j", "q")))
	traced := nj("j", "q")
	traced.TraceParent, traced.TraceState = tp, "vendor=1"
	b.one(cmdEnqueue(t0, traced))
	if a.f.Hash() == b.f.Hash() {
		t.Fatal("hash ignores the trace context")
	}
	if j := a.get("j"); j.TraceParent != "" || j.TraceState != "" {
		t.Fatalf("untraced job has trace %q %q", j.TraceParent, j.TraceState)
	}
	b.one(cmdLease(t0, "w", "j"))
	if j := b.get("j"); j.TraceParent != tp || j.TraceState != "vendor=1" {
		t.Fatalf("leased job trace %q %q", j.TraceParent, j.TraceState)
	}
	want := b.f.Hash()
	f := New()
	if err := restoreBytes(f, snapshotBytes(t, b.f)); err != nil {
		t.Fatal(err)
	}
	if f.Hash() != want {
		t.Fatal("restored hash differs")
	}
	hh := &harness{t: t, f: f, index: f.LastIndex()}
	if j := hh.get("j"); j.TraceParent != tp || j.TraceState != "vendor=1" {
		t.Fatalf("restored trace %q %q", j.TraceParent, j.TraceState)
	}
}
