package fsm

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/raftq/raftq/fsm/fsmpb"
	"github.com/raftq/raftq/internal/placement"
)

func cmdMembers(group uint32, expect uint64, members ...string) *fsmpb.Command {
	return &fsmpb.Command{Type: fsmpb.CommandType_COMMAND_TYPE_SET_GROUP_MEMBERS, Now: t0,
		Body: &fsmpb.Command_SetGroupMembers{SetGroupMembers: &fsmpb.GroupMembers{
			Group: group, Members: members, ExpectVersion: expect}}}
}

// wantMembers checks group's record in f's membership table.
func wantMembers(t testing.TB, f *FSM, group uint32, version uint64, members ...string) {
	t.Helper()
	want := &fsmpb.GroupMembers{Group: group, Members: members, Version: version}
	if got := f.GroupMembers()[group]; !proto.Equal(got, want) {
		t.Fatalf("members of group %d = %v, want %v", group, got, want)
	}
}

// A group's membership record is created at version 1 and changed one
// version at a time: each SetGroupMembers is a compare-and-set on the
// version, so a stale one (a second leader re-placing the group) changes
// nothing. GroupMembers sees every change (its cache is invalidated).
func TestGroupMembersCompareAndSet(t *testing.T) {
	h := newHarness(t)
	h.one(cmdEnqueue(t0, nj("a", "q")))
	if len(h.f.GroupMembers()) != 0 {
		t.Fatal("a new store has membership records")
	}
	empty := h.f.Hash()

	// A group without a record has version 0: only expect_version 0 applies.
	if r := h.one(cmdMembers(1, 1, "n1", "n2", "n3")); !errors.Is(r.Err, ErrWrongState) {
		t.Fatalf("first record expecting version 1: %v", r.Err)
	}
	if h.f.Hash() != empty || len(h.f.GroupMembers()) != 0 {
		t.Fatal("a refused first record changed the store")
	}
	if r := h.one(cmdMembers(1, 0, "n1", "n2", "n3")); r.Err != nil {
		t.Fatal(r.Err)
	}
	if h.f.Hash() == empty {
		t.Fatal("a membership record did not change the hash")
	}
	wantMembers(t, h.f, 1, 1, "n1", "n2", "n3")
	v1 := h.f.Hash()
	v1Table := h.f.GroupMembers()

	// Stale (the founding command again) and future versions are refused.
	for _, expect := range []uint64{0, 2, 7} {
		if r := h.one(cmdMembers(1, expect, "n2", "n3", "n4")); !errors.Is(r.Err, ErrWrongState) {
			t.Fatalf("expect_version %d at version 1: %v", expect, r.Err)
		}
		if h.f.Hash() != v1 {
			t.Fatalf("a refused compare-and-set (expect_version %d) changed the store", expect)
		}
		wantMembers(t, h.f, 1, 1, "n1", "n2", "n3")
	}

	// The current version applies and makes version 2; the table read
	// before (cached) is not what GroupMembers answers now.
	if r := h.one(cmdMembers(1, 1, "n2", "n3", "n4")); r.Err != nil {
		t.Fatal(r.Err)
	}
	wantMembers(t, h.f, 1, 2, "n2", "n3", "n4")
	if !proto.Equal(v1Table[1], &fsmpb.GroupMembers{Group: 1, Members: []string{"n1", "n2", "n3"}, Version: 1}) {
		t.Fatalf("an earlier answer changed under its caller: %v", v1Table[1])
	}
	if h.f.Hash() == v1 {
		t.Fatal("version 2 did not change the hash")
	}
	// Version 1 is now stale.
	v2 := h.f.Hash()
	if r := h.one(cmdMembers(1, 1, "n1")); !errors.Is(r.Err, ErrWrongState) || h.f.Hash() != v2 {
		t.Fatalf("stale expect_version 1 at version 2: %v", r.Err)
	}

	// Groups are independent: another group starts at version 0.
	if r := h.one(cmdMembers(3, 0, "n5")); r.Err != nil {
		t.Fatal(r.Err)
	}
	wantMembers(t, h.f, 3, 1, "n5")
	wantMembers(t, h.f, 1, 2, "n2", "n3", "n4")
	if len(h.f.GroupMembers()) != 2 {
		t.Fatalf("table %v", h.f.GroupMembers())
	}
	// The placement table is untouched by membership (and vice versa).
	if len(h.f.Placements()) != 0 {
		t.Fatalf("placements %v", h.f.Placements())
	}
	h.one(cmdPlace(&fsmpb.QueuePlacement{Queue: "q", Group: 2, FromGroup: 0, Phase: phaseSealing}))
	if len(h.f.GroupMembers()) != 2 || len(h.f.Placements()) != 1 {
		t.Fatalf("members %v, placements %v", h.f.GroupMembers(), h.f.Placements())
	}
	checkInvariants(t, h.f)
}

// Malformed membership commands are refused as invalid and write nothing,
// whether or not the group has a record (and even when the version would
// match); the limits themselves are accepted.
func TestGroupMembersRefusesBadInput(t *testing.T) {
	long := strings.Repeat("n", maxKeyPart+1)
	many := make([]string, maxGroupMembers+1)
	for i := range many {
		many[i] = fmt.Sprintf("n%02d", i)
	}
	bad := map[string]*fsmpb.Command{
		"group 0":            cmdMembers(0, 0, "n1"),
		"group MaxGroups":    cmdMembers(placement.MaxGroups, 0, "n1"),
		"group 1024":         cmdMembers(1024, 0, "n1"),
		"huge group":         cmdMembers(math.MaxUint32, 0, "n1"),
		"no members":         cmdMembers(1, 1),
		"empty member":       cmdMembers(1, 1, "", "n1"),
		"empty member later": cmdMembers(1, 1, "n1", ""),
		"unsorted":           cmdMembers(1, 1, "n2", "n1"),
		"duplicate":          cmdMembers(1, 1, "n1", "n1"),
		"duplicate later":    cmdMembers(1, 1, "n1", "n2", "n2"),
		"too many":           cmdMembers(1, 1, many...),
		"id too long":        cmdMembers(1, 1, "n1", long),
		"no successor":       cmdMembers(2, math.MaxUint64, "n1"),
	}
	for _, withRecord := range []bool{false, true} {
		h := newHarness(t)
		h.one(cmdEnqueue(t0, nj("a", "q")))
		if withRecord {
			h.one(cmdMembers(1, 0, "n1", "n2"))
		}
		before, table := h.f.Hash(), h.f.GroupMembers()
		for name, c := range bad {
			if !withRecord && c.GetSetGroupMembers().GetGroup() == 1 {
				c = proto.Clone(c).(*fsmpb.Command)
				c.GetSetGroupMembers().ExpectVersion = 0
			}
			if r := h.one(c); !errors.Is(r.Err, ErrInvalid) {
				t.Fatalf("record %v, %s: %v", withRecord, name, r.Err)
			}
			if h.f.Hash() != before {
				t.Fatalf("record %v, %s: a refused command changed the store", withRecord, name)
			}
			if got := h.f.GroupMembers(); len(got) != len(table) || !proto.Equal(got[1], table[1]) {
				t.Fatalf("record %v, %s: table %v, was %v", withRecord, name, got, table)
			}
		}
	}
	// The bounds themselves are fine.
	h := newHarness(t)
	if r := h.one(cmdMembers(placement.MaxGroups-1, 0, many[:maxGroupMembers]...)); r.Err != nil {
		t.Fatal(r.Err)
	}
	wantMembers(t, h.f, placement.MaxGroups-1, 1, many[:maxGroupMembers]...)
	if r := h.one(cmdMembers(1, 0, strings.Repeat("n", maxKeyPart))); r.Err != nil {
		t.Fatal(r.Err)
	}
}

// The stored record is the command's group and members with the new
// version: expect_version and a version the command carries are not
// stored, so replicas store (and hash) the same bytes whatever the
// proposer set there.
func TestGroupMembersStoresTheRecordOnly(t *testing.T) {
	a, b := newHarness(t), newHarness(t)
	a.one(cmdMembers(2, 0, "n1", "n2"))
	c := cmdMembers(2, 0, "n1", "n2")
	c.GetSetGroupMembers().Version = 99
	b.one(c)
	wantMembers(t, b.f, 2, 1, "n1", "n2")
	if a.f.Hash() != b.f.Hash() {
		t.Fatal("a command's version field reached the store")
	}
}

// The table survives a snapshot: a fresh FSM restored from it has the same
// records and hash, answers GroupMembers from the restored store (not its
// cache from before), and goes on from the restored versions.
func TestGroupMembersSnapshot(t *testing.T) {
	h := newHarness(t)
	h.one(cmdEnqueue(t0, nj("a", "q")))
	h.one(cmdMembers(1, 0, "n1", "n2", "n3"))
	h.one(cmdMembers(1, 1, "n1", "n3", "n4"))
	h.one(cmdMembers(5, 0, "n2"))
	h.one(cmdPlace(&fsmpb.QueuePlacement{Queue: "q", Group: 5, FromGroup: 0, Phase: phaseSealing}))
	h.one(cmdSeal("q", true, 5))
	want, wantTable := h.f.Hash(), h.f.GroupMembers()

	f := New()
	if len(f.GroupMembers()) != 0 { // caches an empty table
		t.Fatal("empty store has membership records")
	}
	if err := restoreBytes(f, snapshotBytes(t, h.f)); err != nil {
		t.Fatal(err)
	}
	if f.Hash() != want {
		t.Fatal("restored state differs")
	}
	got := f.GroupMembers()
	if len(got) != len(wantTable) || len(got) != 2 {
		t.Fatalf("restored table %v, want %v", got, wantTable)
	}
	for g, r := range wantTable {
		if !proto.Equal(got[g], r) {
			t.Fatalf("restored group %d: %v, want %v", g, got[g], r)
		}
	}
	wantMembers(t, f, 1, 2, "n1", "n3", "n4")
	wantMembers(t, f, 5, 1, "n2")
	if p := f.Placements()["q"]; p.GetGroup() != 5 {
		t.Fatalf("restored placement %v", p)
	}
	// The restored replica and the original go on alike.
	r := &harness{t: t, f: f, index: h.index}
	for _, x := range []*harness{h, r} {
		if res := x.one(cmdMembers(1, 1, "n9")); !errors.Is(res.Err, ErrWrongState) {
			t.Fatalf("stale after restore: %v", res.Err)
		}
		if res := x.one(cmdMembers(1, 2, "n9")); res.Err != nil {
			t.Fatal(res.Err)
		}
		wantMembers(t, x.f, 1, 3, "n9")
	}
	if f.Hash() != h.f.Hash() {
		t.Fatal("restored replica diverged after the next change")
	}
	// A snapshot of the restored store restores to the same state again.
	again := New()
	if err := restoreBytes(again, snapshotBytes(t, f)); err != nil {
		t.Fatal(err)
	}
	if again.Hash() != f.Hash() {
		t.Fatal("second round trip changed state")
	}
	checkInvariants(t, f)
}

// Restore refuses membership records Apply could not have stored, and a
// group twice; the state is then untouched.
func TestGroupMembersRestoreRefusesBadRecords(t *testing.T) {
	rec := func(m proto.Message) []byte {
		b := mustMarshal(m)
		return append(appendUvarint(nil, uint64(len(b))), b...)
	}
	header := rec(&fsmpb.SnapshotHeader{Version: 1, LastIndex: 7})
	members := func(m *fsmpb.GroupMembers) []byte {
		return rec(&fsmpb.SnapshotRecord{Record: &fsmpb.SnapshotRecord_GroupMembers{GroupMembers: m}})
	}
	cat := func(parts ...[]byte) []byte {
		var out []byte
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	good := &fsmpb.GroupMembers{Group: 1, Members: []string{"n1", "n2"}, Version: 3}
	cases := map[string][]byte{
		"group 0":        cat(header, members(&fsmpb.GroupMembers{Group: 0, Members: []string{"n1"}, Version: 1})),
		"group too big":  cat(header, members(&fsmpb.GroupMembers{Group: placement.MaxGroups, Members: []string{"n1"}, Version: 1})),
		"no members":     cat(header, members(&fsmpb.GroupMembers{Group: 1, Version: 1})),
		"unsorted":       cat(header, members(&fsmpb.GroupMembers{Group: 1, Members: []string{"n2", "n1"}, Version: 1})),
		"duplicate":      cat(header, members(&fsmpb.GroupMembers{Group: 1, Members: []string{"n1", "n1"}, Version: 1})),
		"version 0":      cat(header, members(&fsmpb.GroupMembers{Group: 1, Members: []string{"n1"}})),
		"expect_version": cat(header, members(&fsmpb.GroupMembers{Group: 1, Members: []string{"n1"}, Version: 1, ExpectVersion: 1})),
		"group twice":    cat(header, members(good), members(good)),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			h.one(cmdMembers(2, 0, "n7"))
			hash, last := h.f.Hash(), h.f.LastIndex()
			if err := restoreBytes(h.f, b); err == nil {
				t.Fatal("Restore accepted it")
			}
			if h.f.Hash() != hash || h.f.LastIndex() != last {
				t.Fatal("failed Restore changed state")
			}
			wantMembers(t, h.f, 2, 1, "n7")
		})
	}
	// A hand-made valid stream restores as given.
	f := New()
	if err := restoreBytes(f, cat(header, members(good))); err != nil {
		t.Fatal(err)
	}
	wantMembers(t, f, 1, 3, "n1", "n2")
}

// Decode takes a SetGroupMembers only with its body.
func TestGroupMembersDecode(t *testing.T) {
	e, err := Decode(entry(cmdMembers(1, 0, "n1")))
	if err != nil {
		t.Fatal(err)
	}
	if got := e.GetCommands()[0].GetSetGroupMembers(); got.GetGroup() != 1 || len(got.GetMembers()) != 1 {
		t.Fatalf("decoded %v", got)
	}
	for _, c := range []*fsmpb.Command{
		{Type: fsmpb.CommandType_COMMAND_TYPE_SET_GROUP_MEMBERS},
		{Type: fsmpb.CommandType_COMMAND_TYPE_SET_GROUP_MEMBERS, Body: &fsmpb.Command_SealQueue{SealQueue: &fsmpb.SealQueue{}}},
		{Type: fsmpb.CommandType_COMMAND_TYPE_SEAL_QUEUE, Body: &fsmpb.Command_SetGroupMembers{SetGroupMembers: &fsmpb.GroupMembers{}}},
	} {
		if _, err := Decode(frame(mustMarshal(&fsmpb.Entry{Version: EntryVersion, Commands: []*fsmpb.Command{c}}))); err == nil {
			t.Fatalf("Decode accepted %v", c)
		}
	}
}
