package admin

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// The dashboard is server-rendered html/template pages with embedded CSS
// and one small script (live queue depths); no build step, no external
// assets. Its one write, redrive, is a plain form post, so it works without
// JavaScript too.

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticRoot embed.FS

var staticFS, _ = fs.Sub(staticRoot, ".")

var pages = map[string]*template.Template{}

func init() {
	funcs := template.FuncMap{
		"ago": func(t *time.Time) string {
			if t == nil {
				return ""
			}
			return time.Since(*t).Round(time.Second).String() + " ago"
		},
		"stamp": func(t *time.Time) string {
			if t == nil {
				return ""
			}
			return t.UTC().Format("2006-01-02 15:04:05Z")
		},
		"secs": func(f float64) string { return (time.Duration(f * float64(time.Second))).Round(time.Second).String() },
		"rate": func(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) },
		"payload": func(b []byte) string {
			if len(b) > 4096 {
				b = b[:4096]
			}
			return string(bytes.ToValidUTF8(b, []byte("\uFFFD")))
		},
		"pathesc": url.PathEscape,
	}
	for _, name := range []string{"cluster", "queues", "dead", "job", "error"} {
		pages[name] = template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html"))
	}
}

type pageData struct {
	Title  string
	Node   string
	Active string
	Data   any
}

func (s *Server) render(w http.ResponseWriter, status int, page, title, active string, data any) {
	var buf bytes.Buffer
	if err := pages[page].Execute(&buf, pageData{Title: title, Node: s.cfg.Node.ID(), Active: active, Data: data}); err != nil {
		s.log.Error("render", "page", page, "err", err)
		http.Error(w, "template error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (s *Server) renderError(w http.ResponseWriter, r *http.Request, err error) {
	ae := toAPIError(err)
	info := ae.info
	info.RequestID = requestID(r.Context())
	s.render(w, ae.status, "error", "Error", "", info)
}

func (s *Server) uiRoutes(r chi.Router) {
	r.Get("/ui", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ui/", http.StatusFound) })
	r.Get("/ui/", s.uiCluster)
	r.Get("/ui/queues", s.uiQueues)
	r.Get("/ui/queues/{queue}/dead", s.uiDead)
	r.Post("/ui/queues/{queue}/dead/redrive", s.uiRedrive)
	r.Get("/ui/jobs/{id}", s.uiJob)
}

func (s *Server) uiCluster(w http.ResponseWriter, r *http.Request) {
	c, err := s.clusterView(r)
	if err != nil {
		s.renderError(w, r, err)
		return
	}
	s.render(w, http.StatusOK, "cluster", "Cluster", "cluster", c)
}

func (s *Server) uiQueues(w http.ResponseWriter, r *http.Request) {
	qs, err := s.queues(r)
	if err != nil {
		s.renderError(w, r, err)
		return
	}
	s.render(w, http.StatusOK, "queues", "Queues", "queues", qs)
}

type deadPage struct {
	Queue    string
	Page     JobPage
	Redriven string
}

func (s *Server) uiDead(w http.ResponseWriter, r *http.Request) {
	q := chi.URLParam(r, "queue")
	page, err := s.list(r, q, raftqv1.JobState_JOB_STATE_DEAD)
	if err != nil {
		s.renderError(w, r, err)
		return
	}
	s.render(w, http.StatusOK, "dead", "Dead letters of "+q, "queues", deadPage{Queue: q, Page: page, Redriven: r.URL.Query().Get("redriven")})
}

func (s *Server) uiRedrive(w http.ResponseWriter, r *http.Request) {
	// A form post from another site never gets here (refuseCrossSite).
	r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	if err := r.ParseForm(); err != nil {
		s.renderError(w, r, invalid("bad form: "+err.Error()))
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
	http.Redirect(w, r, fmt.Sprintf("/ui/queues/%s/dead?redriven=%d", url.PathEscape(q), len(resp.JobIds)), http.StatusSeeOther)
}

type jobPage struct {
	Job         Job
	Attempts    []Attempt
	AttemptsErr string
	HasResults  bool
}

func (s *Server) uiJob(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	j, err := s.job(r, id)
	if err != nil {
		s.renderError(w, r, err)
		return
	}
	p := jobPage{Job: JobFromProto(j), HasResults: s.results != nil}
	if s.results != nil {
		if p.Attempts, err = s.attempts(r, id); err != nil {
			p.AttemptsErr = err.Error()
		}
	}
	s.render(w, http.StatusOK, "job", "Job "+id, "queues", p)
}
