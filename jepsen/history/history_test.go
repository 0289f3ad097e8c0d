package history

import (
	"path/filepath"
	"reflect"
	"testing"
)

func TestRecordAndLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.jsonl")
	r, err := NewRecorder(path)
	if err != nil {
		t.Fatal(err)
	}
	a := r.Add(Op{Kind: Enqueue, Status: OK, Value: "p0-0", JobID: "j", Start: 1, End: 2})
	b := r.Add(Op{Kind: Ack, Status: Info, JobID: "j", Token: 7, Zombie: true, Error: "timeout"})
	if a.Index != 0 || b.Index != 1 {
		t.Fatalf("indexes %d %d", a.Index, b.Index)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, r.Ops()) {
		t.Fatalf("loaded %+v, recorded %+v", got, r.Ops())
	}
}
