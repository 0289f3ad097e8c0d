package brokerd

import "time"

// SetScheduleGrace shortens how late a tick may fire before it counts as
// missed, for tests of the missed-tick policy; it returns the restore.
func SetScheduleGrace(d time.Duration) (restore func()) {
	old := scheduleGrace
	scheduleGrace = d
	return func() { scheduleGrace = old }
}
