package etcdnode_test

import (
	"fmt"
	"testing"

	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/brokerd/etcdnode"
)

// TestClusterRecordValidate: what makes a cluster record unusable.
func TestClusterRecordValidate(t *testing.T) {
	good := func() etcdnode.ClusterRecord {
		return etcdnode.ClusterRecord{ClusterID: "c1", By: "n1", Voters: []brokerd.Peer{{ID: "n1", RaftAddr: "10.0.0.1:7201"}, {ID: "n2", RaftAddr: "10.0.0.2:7201"}}}
	}
	if err := good().Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*etcdnode.ClusterRecord){
		"no cluster id":     func(r *etcdnode.ClusterRecord) { r.ClusterID = "" },
		"no voters":         func(r *etcdnode.ClusterRecord) { r.Voters = nil },
		"bad voter id":      func(r *etcdnode.ClusterRecord) { r.Voters[1].ID = "a/b" },
		"bad address":       func(r *etcdnode.ClusterRecord) { r.Voters[1].RaftAddr = "nohost" },
		"duplicate id":      func(r *etcdnode.ClusterRecord) { r.Voters[1].ID = "n1" },
		"duplicate address": func(r *etcdnode.ClusterRecord) { r.Voters[1].RaftAddr = "10.0.0.1:7201" },
		"winner not voter":  func(r *etcdnode.ClusterRecord) { r.By = "n9" },
		"too many voters": func(r *etcdnode.ClusterRecord) {
			for i := 3; i <= 16; i++ {
				r.Voters = append(r.Voters, brokerd.Peer{ID: fmt.Sprintf("n%d", i), RaftAddr: fmt.Sprintf("10.0.0.%d:7201", i)})
			}
		},
	} {
		r := good()
		mut(&r)
		if err := r.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
