package fsm

import "go.etcd.io/bbolt"

// dropAllResident drops the whole of db's map from this process's
// resident set (dropResident), inside a read transaction of its own: the
// transaction holds bbolt's map in place while madvise runs.
func dropAllResident(db *bbolt.DB) {
	tx, err := db.Begin(false)
	if err != nil {
		return
	}
	dropResident(tx, tx.Size())
	_ = tx.Rollback()
}
