package admin

import (
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/raftq/raftq/internal/adminapi"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

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
	out := []adminapi.Schedule{}
	for _, sc := range resp.Schedules {
		out = append(out, adminapi.ScheduleFromProto(sc))
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
	writeJSON(w, http.StatusOK, adminapi.ScheduleFromProto(resp.Schedule))
}
