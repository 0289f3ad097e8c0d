package report

import (
	"fmt"
	"html"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/raftq/raftq/jepsen/history"
)

var familyColour = map[string]string{
	"partition": "#f4a3a3", "kill": "#f7c873", "pause": "#c9b3f0", "net": "#9fd3f0",
	"clock": "#b5e3a1", "membership": "#f0b3d9", "crash": "#e0a070", "compound": "#aaaaaa",
}

// WriteHTML writes index.html into dir.
func WriteHTML(dir string, r *Run, ops []history.Op) error {
	var b strings.Builder
	esc := html.EscapeString
	b.WriteString(`<!doctype html><html><head><meta charset="utf-8"><title>raftq jepsen ` + esc(r.Name) + `</title>
<style>body{font:13px sans-serif;margin:20px}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}
.bad{color:#b00;font-weight:bold}.ok{color:#070;font-weight:bold}tr.hit{background:#fdd}svg text{font:10px sans-serif}</style></head><body>`)
	verdict := `<span class="ok">VALID</span>`
	if !r.Valid {
		verdict = `<span class="bad">INVALID</span>`
	}
	fmt.Fprintf(&b, "<h1>raftq jepsen run %s: %s</h1><p>%s, %.0f s. Config: %s</p>", esc(r.Name), verdict, r.Start.Format("2006-01-02 15:04:05"), r.Seconds, esc(fmt.Sprint(r.Config)))

	b.WriteString("<h2>Checkers</h2><table><tr><th>checker</th><th>verdict</th><th>counts</th></tr>")
	for _, c := range r.Checkers {
		v := `<span class="ok">valid</span>`
		if !c.Valid {
			v = `<span class="bad">INVALID</span>`
		}
		var ks []string
		for k := range c.Counts {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		var cs []string
		for _, k := range ks {
			cs = append(cs, fmt.Sprintf("%s=%d", k, c.Counts[k]))
		}
		fmt.Fprintf(&b, "<tr><td>%s</td><td>%s</td><td>%s</td></tr>", esc(c.Name), v, esc(strings.Join(cs, " ")))
	}
	b.WriteString("</table>")
	fmt.Fprintf(&b, "<p>enqueue OK/s: %.1f overall, %.1f during faults, %.1f fault-free; ack OK/s: %.1f, %.1f, %.1f. Enqueue latency ms p50/p99/max: %v/%v/%v.</p>",
		r.Stats.EnqueueRate.All, r.Stats.EnqueueRate.DuringFault, r.Stats.EnqueueRate.FaultFree,
		r.Stats.AckRate.All, r.Stats.AckRate.DuringFault, r.Stats.AckRate.FaultFree,
		r.Stats.EnqueueLatency.P50, r.Stats.EnqueueLatency.P99, r.Stats.EnqueueLatency.Max)

	b.WriteString("<h2>Timeline</h2>")
	b.WriteString(timeline(r, ops))

	b.WriteString("<h2>Faults</h2><table><tr><th>from s</th><th>to s</th><th>family</th><th>what</th><th>error</th></tr>")
	for _, i := range r.Nemesis {
		fmt.Fprintf(&b, `<tr><td>%.1f</td><td>%.1f</td><td style="background:%s">%s</td><td>%s</td><td>%s</td></tr>`, i.From, i.To, familyColour[i.Family], esc(i.Family), esc(i.What), esc(i.Error))
	}
	b.WriteString("</table>")

	b.WriteString("<h2>Failures</h2>")
	any := false
	for _, c := range r.Checkers {
		for fi, f := range c.Failures {
			if fi == 20 {
				fmt.Fprintf(&b, "<p>... %d more failures of %s in results.json</p>", len(c.Failures)-20, esc(c.Name))
				break
			}
			any = true
			fmt.Fprintf(&b, "<h3>%s: %s</h3>", esc(c.Name), esc(f.Msg))
			b.WriteString(opsAround(ops, f.JobID, f.Ops))
		}
	}
	if !any {
		b.WriteString("<p>none</p>")
	}
	b.WriteString("</body></html>\n")
	return os.WriteFile(filepath.Join(dir, "index.html"), []byte(b.String()), 0o644)
}

// opsAround lists the failure's operations, every other operation of the
// same job, and the operations completed within a second of them.
func opsAround(ops []history.Op, jobID string, idx []int) string {
	hit := map[int]bool{}
	for _, i := range idx {
		hit[i] = true
	}
	var times []int64
	for _, i := range idx {
		if i >= 0 && i < len(ops) {
			times = append(times, ops[i].End)
		}
	}
	var sel []history.Op
	for _, op := range ops {
		near := false
		for _, t := range times {
			if op.End > t-500e6 && op.End < t+500e6 && op.Kind != history.Read {
				near = true
			}
		}
		if hit[op.Index] || (jobID != "" && op.JobID == jobID) || near {
			sel = append(sel, op)
		}
	}
	if len(sel) > 60 {
		// Keep the failure's own and its job's ops, then the nearest others.
		var keep []history.Op
		for _, op := range sel {
			if hit[op.Index] || (jobID != "" && op.JobID == jobID) {
				keep = append(keep, op)
			}
		}
		sel = keep
	}
	sort.Slice(sel, func(i, j int) bool { return sel[i].Start < sel[j].Start })
	var b strings.Builder
	b.WriteString("<table><tr><th>#</th><th>proc</th><th>kind</th><th>status</th><th>start s</th><th>end s</th><th>job</th><th>token</th><th>value</th><th>state</th><th>error</th></tr>")
	for _, op := range sel {
		cls := ""
		if hit[op.Index] {
			cls = ` class="hit"`
		}
		kind := string(op.Kind)
		if op.Zombie {
			kind += " (zombie)"
		}
		fmt.Fprintf(&b, "<tr%s><td>%d</td><td>%d</td><td>%s</td><td>%s</td><td>%.3f</td><td>%.3f</td><td>%s</td><td>%d</td><td>%s</td><td>%s</td><td>%s</td></tr>",
			cls, op.Index, op.Process, html.EscapeString(kind), op.Status, sec(op.Start), sec(op.End), html.EscapeString(op.JobID), op.Token,
			html.EscapeString(op.Value), html.EscapeString(op.State), html.EscapeString(op.Error))
	}
	b.WriteString("</table>")
	return b.String()
}

// timeline draws two charts over the run: OK enqueues and acks per second,
// and enqueue latency (p50, p99) per second, over the shaded fault
// intervals.
func timeline(r *Run, ops []history.Op) string {
	var end int64
	for _, op := range ops {
		if op.End > end {
			end = op.End
		}
	}
	secs := int(end/1e9) + 1
	enq := make([]float64, secs)
	ack := make([]float64, secs)
	lat := make([][]float64, secs)
	fails := make([]float64, secs)
	for _, op := range ops {
		s := int(op.End / 1e9)
		if s < 0 || s >= secs {
			continue
		}
		switch {
		case op.Kind == history.Enqueue && op.Status == history.OK:
			enq[s]++
			lat[s] = append(lat[s], float64(op.End-op.Start)/1e6)
		case op.Kind == history.Ack && op.Status == history.OK:
			ack[s]++
		}
		if op.Kind != history.Nemesis && op.Kind != history.Read && op.Status != history.OK {
			fails[s]++
		}
	}
	p50 := make([]float64, secs)
	p99 := make([]float64, secs)
	for i, l := range lat {
		if len(l) > 0 {
			sort.Float64s(l)
			p50[i] = l[len(l)/2]
			p99[i] = l[int(0.99*float64(len(l)-1))]
		}
	}
	const W, H, L = 1100.0, 180.0, 50.0
	chart := func(title string, series map[string][]float64, colours map[string]string, unit string) string {
		max := 1.0
		for _, s := range series {
			for _, v := range s {
				if v > max {
					max = v
				}
			}
		}
		x := func(t float64) float64 { return L + (W-L-10)*t/float64(secs) }
		y := func(v float64) float64 { return H - 20 - (H-30)*v/max }
		var b strings.Builder
		fmt.Fprintf(&b, `<p>%s</p><svg width="%.0f" height="%.0f" style="border:1px solid #ddd">`, title, W, H)
		for _, i := range r.Nemesis {
			fmt.Fprintf(&b, `<rect x="%.1f" y="0" width="%.1f" height="%.0f" fill="%s" opacity="0.5"><title>%s</title></rect>`,
				x(i.From), x(i.To)-x(i.From)+0.5, H-20, familyColour[i.Family], html.EscapeString(i.What))
			fmt.Fprintf(&b, `<text x="%.1f" y="10">%s</text>`, x(i.From)+1, html.EscapeString(i.Family))
		}
		names := make([]string, 0, len(series))
		for k := range series {
			names = append(names, k)
		}
		sort.Strings(names)
		for li, name := range names {
			var pts []string
			for t, v := range series[name] {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(float64(t)+0.5), y(v)))
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.2" points="%s"/>`, colours[name], strings.Join(pts, " "))
			fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" fill="%s">%s</text>`, W-150, 24+12*float64(li), colours[name], name)
		}
		fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#000"/>`, L, H-20, W-10, H-20)
		fmt.Fprintf(&b, `<text x="2" y="14">%.0f %s</text><text x="2" y="%.0f">0</text>`, max, unit, H-20)
		for t := 0; t < secs; t += 30 {
			fmt.Fprintf(&b, `<text x="%.1f" y="%.0f">%ds</text>`, x(float64(t)), H-6, t)
		}
		b.WriteString("</svg>")
		return b.String()
	}
	return chart("Throughput (OK operations per second; failed or indeterminate client calls in red)",
		map[string][]float64{"enqueue ok": enq, "ack ok": ack, "not ok": fails},
		map[string]string{"enqueue ok": "#1f5fbf", "ack ok": "#2a9d3a", "not ok": "#c00"}, "/s") +
		chart("Enqueue latency per second (ms)",
			map[string][]float64{"p50": p50, "p99": p99},
			map[string]string{"p50": "#1f5fbf", "p99": "#c07000"}, "ms")
}
