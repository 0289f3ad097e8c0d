package admin

import (
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// Schedule is one periodic schedule in the admin API's JSON shape
// (brokerctl schedules -o json prints the same).
type Schedule struct {
	Name            string     `json:"name"`
	Queue           string     `json:"queue"`
	Type            string     `json:"type"`
	Payload         []byte     `json:"payload,omitempty"` // base64
	Priority        int32      `json:"priority"`
	MaxAttempts     int32      `json:"max_attempts"`
	Cron            string     `json:"cron,omitempty"`
	IntervalSeconds float64    `json:"interval_seconds,omitempty"`
	TimeZone        string     `json:"time_zone,omitempty"`
	JitterSeconds   float64    `json:"jitter_seconds,omitempty"`
	Overlap         string     `json:"overlap"`
	CatchUp         int32      `json:"catch_up"`
	Paused          bool       `json:"paused"`
	LastTick        *time.Time `json:"last_tick,omitempty"`
	NextTick        *time.Time `json:"next_tick,omitempty"`
	LastJobID       string     `json:"last_job_id,omitempty"`
	Fired           int64      `json:"fired"`
	Skipped         int64      `json:"skipped"`
	CreatedAt       *time.Time `json:"created_at,omitempty"`
	UpdatedAt       *time.Time `json:"updated_at,omitempty"`
}

// OverlapName is the lower-case name of an overlap policy: skip, allow or
// cancel-previous (the names brokerctl and schedule files use).
func OverlapName(p raftqv1.OverlapPolicy) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(p.String(), "OVERLAP_POLICY_")), "_", "-")
}

// ScheduleFromProto converts the gRPC API's schedule into the JSON shape.
func ScheduleFromProto(s *raftqv1.Schedule) Schedule {
	ts := func(t *timestamppb.Timestamp) *time.Time {
		if t == nil || !t.IsValid() {
			return nil
		}
		v := t.AsTime()
		return &v
	}
	sp := s.GetSpec()
	return Schedule{
		Name: sp.GetName(), Queue: sp.GetJob().GetQueue(), Type: sp.GetJob().GetType(), Payload: sp.GetJob().GetPayload(),
		Priority: sp.GetJob().GetPriority(), MaxAttempts: sp.GetJob().GetMaxAttempts(),
		Cron: sp.GetCron(), IntervalSeconds: sp.GetInterval().AsDuration().Seconds(), TimeZone: sp.GetTimeZone(),
		JitterSeconds: sp.GetJitter().AsDuration().Seconds(), Overlap: OverlapName(sp.GetOverlap()),
		CatchUp: sp.GetCatchUp(), Paused: sp.GetPaused(),
		LastTick: ts(s.GetLastTick()), NextTick: ts(s.GetNextTick()), LastJobID: s.GetLastJobId(),
		Fired: s.GetFired(), Skipped: s.GetSkipped(), CreatedAt: ts(s.GetCreatedAt()), UpdatedAt: ts(s.GetUpdatedAt()),
	}
}

func (s *Server) listSchedules(w http.ResponseWriter, r *http.Request) {
	c, err := consistency(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	resp, err := raftqv1.NewSchedulesClient(s.conn).ListSchedules(r.Context(), &raftqv1.ListSchedulesRequest{Consistency: c})
	if err != nil {
		writeError(w, r, err)
		return
	}
	out := []Schedule{}
	for _, sc := range resp.Schedules {
		out = append(out, ScheduleFromProto(sc))
	}
	writeJSON(w, http.StatusOK, map[string]any{"schedules": out})
}

func (s *Server) getSchedule(w http.ResponseWriter, r *http.Request) {
	c, err := consistency(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	resp, err := raftqv1.NewSchedulesClient(s.conn).GetSchedule(r.Context(), &raftqv1.GetScheduleRequest{Name: chi.URLParam(r, "name"), Consistency: c})
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ScheduleFromProto(resp.Schedule))
}
