package admin

import (
	"bytes"
	"context"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"

	"github.com/raftq/raftq/fsm"
	"github.com/raftq/raftq/internal/adminapi"
	"github.com/raftq/raftq/internal/dispatch"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/results"
)

// The dashboard is server-rendered html/template pages with embedded CSS,
// inline SVG charts drawn on the server (svg.go) and one small script
// (static/live.js: live numbers, chart refresh); no build step, no
// external assets. Every action is a plain form post answered with a
// redirect (post/redirect/get), so it works without JavaScript; the
// destructive ones (purge, cancel) first answer with a confirmation page
// whose form carries confirm=yes.

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticRoot embed.FS

var staticFS, _ = fs.Sub(staticRoot, ".")

var pages = map[string]*template.Template{}

// payloadShown caps the bytes of a payload or result the job page shows.
const payloadShown = 64 << 10

// Blob is a payload or result output as the job page shows it: text when
// it is UTF-8, else base64 and a hex dump of the start.
type Blob struct {
	Size      int
	Text      string
	Base64    string
	Hex       string
	Truncated bool
	Binary    bool
}

func blobOf(b []byte) Blob {
	out := Blob{Size: len(b)}
	if len(b) > payloadShown {
		b, out.Truncated = b[:payloadShown], true
	}
	if utf8.Valid(b) {
		out.Text = string(b)
		return out
	}
	out.Binary = true
	out.Base64 = base64.StdEncoding.EncodeToString(b)
	h := b
	if len(h) > 1024 {
		h = h[:1024]
	}
	out.Hex = hex.Dump(h)
	return out
}

func init() {
	funcs := template.FuncMap{
		"ago": func(t *time.Time) string {
			if t == nil {
				return ""
			}
			return agoString(time.Since(*t))
		},
		"stamp": func(t *time.Time) string {
			if t == nil {
				return ""
			}
			return t.UTC().Format("2006-01-02 15:04:05Z")
		},
		"secs":     func(f float64) string { return (time.Duration(f * float64(time.Second))).Round(time.Second).String() },
		"rate":     func(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) },
		"blob":     blobOf,
		"chart":    svgChart,
		"pathesc":  url.PathEscape,
		"queryesc": url.QueryEscape,
		"states":   func() []string { return uiStates },
		"withins":  func() [][2]string { return uiWithins },
		"terminal": func(state string) bool { return state == "succeeded" || state == "dead" || state == "cancelled" },
	}
	for _, name := range []string{"overview", "queues", "queue", "dead", "jobs", "job", "confirm", "error"} {
		pages[name] = template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html"))
	}
}

// uiWithins are the job browser's "created within" choices.
var uiWithins = [][2]string{{"5m", "5 minutes"}, {"1h", "hour"}, {"24h", "day"}, {"168h", "week"}}

var uiStates = []string{"scheduled", "ready", "leased", "succeeded", "dead", "cancelled"}

func agoString(d time.Duration) string {
	switch {
	case d < time.Second:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds ago", int(d.Minutes()), int(d.Seconds())%60)
	}
	return d.Round(time.Minute).String() + " ago"
}

type pageData struct {
	Title  string
	Node   string
	Active string
	Notice string
	Data   any
}

// notices are the messages a redirect after an action may ask for (by
// key, so a link cannot make the page say anything else).
var notices = map[string]string{
	"paused":           "Queue paused: workers get no more of its jobs until it is resumed.",
	"resumed":          "Queue resumed.",
	"cancelled":        "Cancel requested: the job is cancelled (a running attempt is told to stop).",
	"schedule-paused":  "Schedule paused: its ticks do not fire until it is resumed.",
	"schedule-resumed": "Schedule resumed: it fires from its next tick.",
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, page, title, active string, data any) {
	var buf bytes.Buffer
	notice := notices[r.URL.Query().Get("done")]
	if n := r.URL.Query().Get("redriven"); n != "" {
		if k, err := strconv.Atoi(n); err == nil {
			notice = fmt.Sprintf("Redrove %d job(s): they are ready again with fresh attempts.", k)
		}
	}
	if n := r.URL.Query().Get("purged"); n != "" {
		if k, err := strconv.Atoi(n); err == nil {
			notice = fmt.Sprintf("Purged %d dead job(s) for good.", k)
		}
	}
	if err := pages[page].Execute(&buf, pageData{Title: title, Node: s.cfg.Node.ID(), Active: active, Notice: notice, Data: data}); err != nil {
		s.log.Error("render", "page", page, "err", err)
		http.Error(w, "template error", http.StatusInternalServerError)
		return
	}
	setPageHeaders(w)
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func setPageHeaders(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'")
}

func (s *Server) renderError(w http.ResponseWriter, r *http.Request, err error) {
	ae := toAPIError(err)
	info := ae.info
	info.RequestID = requestID(r.Context())
	s.render(w, r, ae.status, "error", "Error", "", info)
}

func (s *Server) uiRoutes(r chi.Router) {
	r.Get("/ui", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ui/", http.StatusFound) })
	r.Get("/ui/", s.uiOverview)
	r.Get("/ui/live/overview", s.uiOverviewLive)
	r.Get("/ui/live/queues/{queue}", s.uiQueueLive)
	r.Get("/ui/queues", s.uiQueues)
	r.Get("/ui/queues/{queue}", s.uiQueue)
	r.Post("/ui/queues/{queue}/pause", s.uiPause)
	r.Post("/ui/queues/{queue}/resume", s.uiResume)
	r.Get("/ui/queues/{queue}/dead", s.uiDead)
	r.Post("/ui/queues/{queue}/dead/redrive", s.uiRedrive)
	r.Post("/ui/queues/{queue}/dead/purge", s.uiPurge)
	r.Post("/ui/schedules/{name}/pause", s.uiSchedulePause)
	r.Post("/ui/schedules/{name}/resume", s.uiScheduleResume)
	r.Get("/ui/jobs", s.uiJobs)
	r.Get("/ui/jobs/{id}", s.uiJob)
	r.Post("/ui/jobs/{id}/cancel", s.uiCancel)
}

// ---- overview ----

type overviewPage struct {
	// Stale, when set, says why the counts are this node's own (stale)
	// state: the linearizable read through the leader failed.
	Stale     string
	Cluster   adminapi.Cluster
	Nodes     []NodeHealth
	Probed    time.Time
	Up, Total int
	Queues    []adminapi.Queue
	Totals    map[string]int64
	Charts    []Chart
	RaftLast  string // this node's raft last_contact (follower: to the leader)
	// Groups are the cluster's Raft groups as this node sees them, with
	// the queues each holds (none with one group).
	Groups []groupRow
}

// groupRow is one Raft group on the overview.
type groupRow struct {
	Info adminapi.Group
	// Queues are the known queues the group holds, in the order the
	// queue table lists them.
	Queues []string
}

func (s *Server) overview(r *http.Request) (overviewPage, error) {
	c, err := s.clusterView(r, false)
	if err != nil {
		return overviewPage{}, err
	}
	qs, stale, err := s.uiQueueStats(r)
	if err != nil {
		return overviewPage{}, err
	}
	p := overviewPage{Stale: stale, Cluster: c, Queues: qs, Totals: map[string]int64{}, RaftLast: c.Raft["last_contact"]}
	for _, q := range qs {
		for k, v := range q.Counts {
			p.Totals[k] += v
		}
	}
	for _, g := range c.Groups {
		row := groupRow{Info: g}
		for _, q := range qs {
			if q.Group == g.Group || slices.Contains(q.Groups, g.Group) {
				row.Queues = append(row.Queues, q.Name)
			}
		}
		p.Groups = append(p.Groups, row)
	}
	p.Nodes, p.Probed = s.nodeHealth(c)
	for _, n := range p.Nodes {
		p.Total++
		if n.Status == "up" {
			p.Up++
		}
	}
	ss := s.hist.samples()
	p.Charts = []Chart{throughput(ss, ""), latency(ss, ""), depth(ss, "")}
	return p, nil
}

// leaderWait bounds the dashboard's linearizable reads: without a leader
// (quorum lost, election running) an overview that waits for the request
// timeout shows nothing when the operator needs it most.
const leaderWait = 3 * time.Second

// uiQueueStats reads every queue linearizably (unless the page asked for
// ?consistency=stale) and, when that fails within leaderWait, from this
// node's own state, saying why.
func (s *Server) uiQueueStats(r *http.Request) ([]adminapi.Queue, string, error) {
	c, err := consistency(r)
	if err != nil {
		return nil, "", err
	}
	ctx, cancel := context.WithTimeout(r.Context(), leaderWait)
	defer cancel()
	qs, err := s.broker.QueueStats(ctx, &raftqv1.QueueStatsRequest{Consistency: c})
	stale := ""
	if err != nil && c != raftqv1.Consistency_CONSISTENCY_STALE && r.Context().Err() == nil {
		stale = toAPIError(err).info.Message
		qs, err = s.broker.QueueStats(r.Context(), &raftqv1.QueueStatsRequest{Consistency: raftqv1.Consistency_CONSISTENCY_STALE})
	}
	if err != nil {
		return nil, "", err
	}
	groups, err := s.groupCount(r.Context())
	if err != nil {
		return nil, "", err
	}
	out := []adminapi.Queue{}
	for _, q := range qs.Queues {
		out = append(out, s.queueJSON(q, groups))
	}
	return out, stale, nil
}

// nodeHealth is the prober's view, or, before its first probe, the
// configuration with every member unknown.
func (s *Server) nodeHealth(c adminapi.Cluster) ([]NodeHealth, time.Time) {
	nodes, at := s.probe.nodes()
	if len(nodes) > 0 {
		return nodes, at
	}
	for _, m := range c.Members {
		nodes = append(nodes, NodeHealth{NodeID: m.NodeID, GRPCAddr: m.GRPCAddr, RaftAddr: m.RaftAddr, Voter: m.Voter, Leader: m.Leader, Status: "unknown", Self: m.NodeID == c.NodeID})
	}
	return nodes, at
}

func (s *Server) uiOverview(w http.ResponseWriter, r *http.Request) {
	p, err := s.overview(r)
	if err != nil {
		s.renderError(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "overview", "Overview", "overview", p)
}

// uiOverviewLive is the overview's changing part alone (cards, charts,
// nodes), which live.js swaps in every few seconds.
func (s *Server) uiOverviewLive(w http.ResponseWriter, r *http.Request) {
	p, err := s.overview(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	s.fragment(w, "overview", "live", p)
}

func (s *Server) fragment(w http.ResponseWriter, page, name string, data any) {
	var buf bytes.Buffer
	if err := pages[page].ExecuteTemplate(&buf, name, data); err != nil {
		s.log.Error("render", "page", page, "fragment", name, "err", err)
		http.Error(w, "template error", http.StatusInternalServerError)
		return
	}
	setPageHeaders(w)
	_, _ = w.Write(buf.Bytes())
}

// getHealth serves the prober's view: GET /v1/cluster/health.
func (s *Server) getHealth(w http.ResponseWriter, r *http.Request) {
	nodes, at := s.probe.nodes()
	body := map[string]any{"node_id": s.cfg.Node.ID(), "nodes": nodes}
	if !at.IsZero() {
		body["probed_at"] = at.UTC()
	}
	writeJSON(w, http.StatusOK, body)
}

// ---- queues ----

func (s *Server) uiQueues(w http.ResponseWriter, r *http.Request) {
	qs, err := s.queues(r)
	if err != nil {
		s.renderError(w, r, err)
		return
	}
	groups, err := s.groupCount(r.Context())
	if err != nil {
		s.renderError(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "queues", "Queues", "queues", queuesPage{Queues: qs, Groups: groups})
}

// queuesPage is the queue list; Groups is the cluster's Raft group count
// (the group column shows only with several).
type queuesPage struct {
	Queues []adminapi.Queue
	Groups uint32
}

type queuePage struct {
	Queue  adminapi.Queue
	Charts []Chart
	// Schedules are the periodic schedules that enqueue into this queue;
	// SchedulesErr says why they could not be read (the page shows the
	// rest).
	Schedules    []adminapi.Schedule
	SchedulesErr string
	// Limit is the queue's live dispatch limits (zero fields: unlimited);
	// LimitsKnown is false when the node has no live configuration.
	Limit       dispatch.QueueLimit
	LimitsKnown bool
}

// knownQueue reads one queue, or NOT_FOUND when the cluster has never
// seen it (the gRPC API reports unknown queues as empty ones).
func (s *Server) knownQueue(r *http.Request, name string) (adminapi.Queue, error) {
	qs, err := s.queues(r)
	if err != nil {
		return adminapi.Queue{}, err
	}
	for _, q := range qs {
		if q.Name == name {
			return q, nil
		}
	}
	return adminapi.Queue{}, newErr(http.StatusNotFound, CodeNotFound, fmt.Sprintf("no queue named %q: a queue exists once a job is enqueued to it", name))
}

func (s *Server) queuePage(r *http.Request) (queuePage, error) {
	name := chi.URLParam(r, "queue")
	q, err := s.knownQueue(r, name)
	if err != nil {
		return queuePage{}, err
	}
	ss := s.hist.samples()
	p := queuePage{Queue: q, Charts: []Chart{throughput(ss, name), depth(ss, name), latency(ss, name)}}
	if s.cfg.Limits != nil {
		p.Limit, p.LimitsKnown = s.cfg.Limits.QueueLimit(name), true
	}
	c, _ := consistency(r) // valid: knownQueue checked it
	resp, err := raftqv1.NewSchedulesClient(s.conn).ListSchedules(r.Context(), &raftqv1.ListSchedulesRequest{Consistency: c})
	if err != nil {
		p.SchedulesErr = toAPIError(err).info.Message
		return p, nil
	}
	for _, sc := range resp.Schedules {
		if sc.GetSpec().GetJob().GetQueue() == name {
			p.Schedules = append(p.Schedules, adminapi.ScheduleFromProto(sc))
		}
	}
	return p, nil
}

func (s *Server) uiQueue(w http.ResponseWriter, r *http.Request) {
	p, err := s.queuePage(r)
	if err != nil {
		s.renderError(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "queue", "Queue "+p.Queue.Name, "queues", p)
}

func (s *Server) uiQueueLive(w http.ResponseWriter, r *http.Request) {
	p, err := s.queuePage(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	s.fragment(w, "queue", "live", p)
}

// form parses a dashboard form post within the body limit. A form post
// from another site never gets here (refuseCrossSite).
func (s *Server) form(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	if err := r.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return mbe
		}
		return invalid("bad form: " + err.Error())
	}
	return nil
}

func (s *Server) uiPause(w http.ResponseWriter, r *http.Request)  { s.uiPauseResume(w, r, true) }
func (s *Server) uiResume(w http.ResponseWriter, r *http.Request) { s.uiPauseResume(w, r, false) }

func (s *Server) uiPauseResume(w http.ResponseWriter, r *http.Request, pause bool) {
	if err := s.form(w, r); err != nil {
		s.renderError(w, r, err)
		return
	}
	q := chi.URLParam(r, "queue")
	// Pausing an unknown queue would create it: refuse, as the page that
	// offers the button only exists for known queues.
	if _, err := s.knownQueue(r, q); err != nil {
		s.renderError(w, r, err)
		return
	}
	var err error
	done := "resumed"
	if pause {
		_, err = s.admin.PauseQueue(r.Context(), &raftqv1.PauseQueueRequest{Queue: q})
		done = "paused"
	} else {
		_, err = s.admin.ResumeQueue(r.Context(), &raftqv1.ResumeQueueRequest{Queue: q})
	}
	if err != nil {
		s.renderError(w, r, err)
		return
	}
	http.Redirect(w, r, "/ui/queues/"+url.PathEscape(q)+"?done="+done, http.StatusSeeOther)
}

func (s *Server) uiSchedulePause(w http.ResponseWriter, r *http.Request) {
	s.uiSchedulePauseResume(w, r, true)
}

func (s *Server) uiScheduleResume(w http.ResponseWriter, r *http.Request) {
	s.uiSchedulePauseResume(w, r, false)
}

// uiSchedulePauseResume pauses or resumes a schedule (an unknown one is
// the API's 404) and returns to its queue's page.
func (s *Server) uiSchedulePauseResume(w http.ResponseWriter, r *http.Request, pause bool) {
	if err := s.form(w, r); err != nil {
		s.renderError(w, r, err)
		return
	}
	name := chi.URLParam(r, "name")
	sc := raftqv1.NewSchedulesClient(s.conn)
	var (
		resp interface{ GetSchedule() *raftqv1.Schedule }
		err  error
	)
	done := "schedule-resumed"
	if pause {
		resp, err = sc.PauseSchedule(r.Context(), &raftqv1.PauseScheduleRequest{Name: name})
		done = "schedule-paused"
	} else {
		resp, err = sc.ResumeSchedule(r.Context(), &raftqv1.ResumeScheduleRequest{Name: name})
	}
	if err != nil {
		s.renderError(w, r, err)
		return
	}
	q := resp.GetSchedule().GetSpec().GetJob().GetQueue()
	http.Redirect(w, r, "/ui/queues/"+url.PathEscape(q)+"?done="+done, http.StatusSeeOther)
}

// ---- dead letters ----

type deadPage struct {
	Queue string
	Page  adminapi.JobPage
}

func (s *Server) uiDead(w http.ResponseWriter, r *http.Request) {
	q := chi.URLParam(r, "queue")
	page, err := s.list(r, q, raftqv1.JobState_JOB_STATE_DEAD)
	if err != nil {
		s.renderError(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "dead", "Dead letters of "+q, "queues", deadPage{Queue: q, Page: page})
}

// back is where an action returns: the form's "return" when it is a
// dashboard path (never another site), else def.
func back(r *http.Request, def string) string {
	p := r.PostForm.Get("return")
	if strings.HasPrefix(p, "/ui/") && !strings.HasPrefix(p, "//") && !strings.ContainsAny(p, "\\\r\n") {
		return p
	}
	return def
}

func withParam(path, k, v string) string {
	if strings.Contains(path, "?") {
		return path + "&" + k + "=" + url.QueryEscape(v)
	}
	return path + "?" + k + "=" + url.QueryEscape(v)
}

func (s *Server) uiRedrive(w http.ResponseWriter, r *http.Request) {
	if err := s.form(w, r); err != nil {
		s.renderError(w, r, err)
		return
	}
	q := chi.URLParam(r, "queue")
	ids := r.PostForm["job_id"]
	if len(ids) == 0 && r.PostForm.Get("all") == "" {
		s.renderError(w, r, invalid("choose jobs to redrive, or all"))
		return
	}
	resp, err := s.admin.Redrive(r.Context(), &raftqv1.RedriveRequest{Queue: q, JobIds: ids})
	if err != nil {
		s.renderError(w, r, err)
		return
	}
	// Post/redirect/get: a reload does not redrive again.
	to := back(r, "/ui/queues/"+url.PathEscape(q)+"/dead")
	http.Redirect(w, r, withParam(to, "redriven", strconv.Itoa(len(resp.JobIds))), http.StatusSeeOther)
}

// confirmPage asks before a destructive action: its form posts the same
// fields again with confirm=yes.
type confirmPage struct {
	Question string
	Action   string
	Fields   [][2]string
	Button   string
	Cancel   string
}

func (s *Server) confirm(w http.ResponseWriter, r *http.Request, question, button, cancel string) bool {
	if r.PostForm.Get("confirm") == "yes" {
		return true
	}
	var fields [][2]string
	for k, vs := range r.PostForm {
		if k == "confirm" {
			continue
		}
		for _, v := range vs {
			fields = append(fields, [2]string{k, v})
		}
	}
	s.render(w, r, http.StatusOK, "confirm", "Confirm", "", confirmPage{Question: question, Action: r.URL.Path, Fields: fields, Button: button, Cancel: cancel})
	return false
}

func (s *Server) uiPurge(w http.ResponseWriter, r *http.Request) {
	if err := s.form(w, r); err != nil {
		s.renderError(w, r, err)
		return
	}
	q := chi.URLParam(r, "queue")
	ids := r.PostForm["job_id"]
	all := r.PostForm.Get("all") != ""
	if len(ids) == 0 && !all {
		s.renderError(w, r, invalid("choose dead jobs to purge, or all"))
		return
	}
	what := fmt.Sprintf("%d dead job(s)", len(ids))
	if all {
		what = "every dead job (up to 1000)"
	}
	if !s.confirm(w, r, fmt.Sprintf("Purge %s of queue %q? They are deleted for good and cannot be redriven.", what, q), "Purge", "/ui/queues/"+url.PathEscape(q)) {
		return
	}
	resp, err := s.admin.PurgeDead(r.Context(), &raftqv1.PurgeDeadRequest{Queue: q, JobIds: ids})
	if err != nil {
		s.renderError(w, r, err)
		return
	}
	to := back(r, "/ui/queues/"+url.PathEscape(q))
	http.Redirect(w, r, withParam(to, "purged", strconv.Itoa(len(resp.JobIds))), http.StatusSeeOther)
}

// ---- jobs ----

// jobsPage is the job browser: one queue or all, one state or all, an
// optional type, a page of at most Limit jobs.
type jobsPage struct {
	// Within keeps jobs created in the last duration ("1h"; "" = any).
	Queue, State, Type, Within string
	Queues                     []string
	Jobs                       []adminapi.Job
	NextAfter                  string
	// Scanned is how many jobs were read to fill the page (the type
	// filter reads past jobs of other types, up to scanLimit).
	Scanned   int
	Truncated bool
}

const (
	browseLimit = 50
	scanLimit   = 5000
)

func (s *Server) uiJobs(w http.ResponseWriter, r *http.Request) {
	qv := r.URL.Query()
	if id := strings.TrimSpace(qv.Get("id")); id != "" {
		http.Redirect(w, r, "/ui/jobs/"+url.PathEscape(id), http.StatusSeeOther)
		return
	}
	p := jobsPage{Queue: qv.Get("queue"), State: qv.Get("state"), Type: qv.Get("type"), Within: qv.Get("within"), Jobs: []adminapi.Job{}}
	var since time.Time
	if p.Within != "" {
		d, err := time.ParseDuration(p.Within)
		if err != nil || d <= 0 {
			s.renderError(w, r, invalid(fmt.Sprintf("within %q: want a positive duration such as 15m or 24h", p.Within)))
			return
		}
		since = time.Now().Add(-d)
	}
	var states []raftqv1.JobState
	if p.State != "" {
		st, err := parseState(p.State)
		if err != nil {
			s.renderError(w, r, err)
			return
		}
		states = []raftqv1.JobState{st}
	} else {
		for st := fsm.StateScheduled; st < fsm.NumStates; st++ {
			states = append(states, raftqv1.JobState(st))
		}
	}
	qs, err := s.queues(r)
	if err != nil {
		s.renderError(w, r, err)
		return
	}
	for _, q := range qs {
		p.Queues = append(p.Queues, q.Name)
	}
	names := p.Queues
	if p.Queue != "" {
		names = []string{p.Queue}
	}
	c, err := consistency(r)
	if err != nil {
		s.renderError(w, r, err)
		return
	}
	// Pagination continues one queue and state; across several, the page
	// shows the first browseLimit found.
	single := len(names) == 1 && len(states) == 1
	after := ""
	if single {
		after = qv.Get("after")
	}
fill:
	for _, q := range names {
		for _, st := range states {
			cur := after
			for {
				resp, err := s.admin.ListJobs(r.Context(), &raftqv1.ListJobsRequest{Queue: q, State: st, Limit: 500, After: cur, Consistency: c})
				if err != nil {
					s.renderError(w, r, err)
					return
				}
				for _, j := range resp.Jobs {
					p.Scanned++
					if (p.Type == "" || j.Type == p.Type) && (since.IsZero() || !j.CreatedAt.AsTime().Before(since)) {
						p.Jobs = append(p.Jobs, adminapi.JobFromProto(j))
						if len(p.Jobs) == browseLimit {
							if single {
								p.NextAfter = j.Id
							} else {
								p.Truncated = true
							}
							break fill
						}
					}
				}
				if resp.NextAfter == "" {
					break
				}
				if p.Scanned >= scanLimit {
					p.Truncated = true
					break fill
				}
				cur = resp.NextAfter
			}
		}
	}
	s.render(w, r, http.StatusOK, "jobs", "Jobs", "jobs", p)
}

type jobPage struct {
	Job         adminapi.Job
	Attempts    []adminapi.Attempt
	AttemptsErr string
	Result      *ResultView
	ResultErr   string
	HasResults  bool
}

// ResultView is the job's result as svcd stores it.
type ResultView struct {
	Status     string
	WorkerID   string
	Attempt    int32
	Error      string
	Output     Blob
	FinishedAt *time.Time
}

func (s *Server) uiJob(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	j, err := s.job(r, id)
	if err != nil {
		s.renderError(w, r, err)
		return
	}
	p := jobPage{Job: adminapi.JobFromProto(j), HasResults: s.results != nil}
	if s.results != nil {
		if p.Attempts, err = s.attempts(r, id); err != nil {
			p.AttemptsErr = err.Error()
		}
		res, err := s.results.GetResult(r.Context(), id)
		switch {
		case err == nil:
			ft := res.FinishedAt
			p.Result = &ResultView{Status: string(res.Status), WorkerID: res.WorkerID, Attempt: res.Attempt, Error: res.Error, Output: blobOf(res.Output)}
			if !ft.IsZero() {
				p.Result.FinishedAt = &ft
			}
		case errors.Is(err, results.ErrNotFound):
		default:
			p.ResultErr = err.Error()
		}
	}
	s.render(w, r, http.StatusOK, "job", "Job "+id, "jobs", p)
}

func (s *Server) uiCancel(w http.ResponseWriter, r *http.Request) {
	if err := s.form(w, r); err != nil {
		s.renderError(w, r, err)
		return
	}
	id := chi.URLParam(r, "id")
	if !s.confirm(w, r, fmt.Sprintf("Cancel job %s? It will not run again; a worker running it is told to stop.", id), "Cancel job", "/ui/jobs/"+url.PathEscape(id)) {
		return
	}
	if _, err := s.broker.CancelJob(r.Context(), &raftqv1.CancelJobRequest{JobId: id}); err != nil {
		s.renderError(w, r, err)
		return
	}
	http.Redirect(w, r, "/ui/jobs/"+url.PathEscape(id)+"?done=cancelled", http.StatusSeeOther)
}
