package admin

import (
	"fmt"
	"html/template"
	"math"
	"strconv"
	"strings"
	"time"
)

// Charts are inline SVG drawn here, on the server: no chart library, no
// script needed to see them, and the strict Content-Security-Policy holds
// (colours come from classes in style.css, not style attributes).

const (
	chartW, chartH = 560, 170
	padL, padR     = 48, 8
	padT, padB     = 8, 22
)

// niceMax rounds a chart's top up to 1, 2 or 5 times a power of ten.
func niceMax(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func fmtNum(v float64, unit string) string {
	switch {
	case unit == "s" && v > 0 && v < 1:
		return strconv.FormatFloat(v*1000, 'g', 3, 64) + "ms"
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'g', 3, 64) + "M"
	case v >= 1e4:
		return strconv.FormatFloat(v/1e3, 'g', 3, 64) + "k"
	}
	return strconv.FormatFloat(v, 'g', 3, 64) + map[bool]string{true: "s", false: ""}[unit == "s"]
}

// svgChart renders c as an inline SVG with its legend. The figure carries
// data-points (samples drawn) so tests can tell an empty chart from a
// drawn one.
func svgChart(c Chart) template.HTML {
	var b strings.Builder
	top := 0.0
	points := 0
	for _, s := range c.Series {
		for i, v := range s.Values {
			if !s.Missing[i] {
				top = max(top, v)
				points++
			}
		}
	}
	top = niceMax(top)
	fmt.Fprintf(&b, `<figure class="chart" data-title="%s" data-points="%d"><figcaption>%s <span class="muted">(%s)</span></figcaption>`,
		template.HTMLEscapeString(c.Title), points, template.HTMLEscapeString(c.Title), template.HTMLEscapeString(c.Unit))
	fmt.Fprintf(&b, `<svg viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="%s">`, chartW, chartH, chartW, chartH, template.HTMLEscapeString(c.Title))
	plotW, plotH := float64(chartW-padL-padR), float64(chartH-padT-padB)
	// Grid: 0, half, top.
	for _, f := range []float64{0, 0.5, 1} {
		y := float64(padT) + plotH*(1-f)
		fmt.Fprintf(&b, `<line class="grid" x1="%d" y1="%.1f" x2="%d" y2="%.1f"/>`, padL, y, chartW-padR, y)
		fmt.Fprintf(&b, `<text class="axis" x="%d" y="%.1f" text-anchor="end">%s</text>`, padL-4, y+4, template.HTMLEscapeString(fmtNum(top*f, c.Unit)))
	}
	if len(c.Times) < 2 {
		fmt.Fprintf(&b, `<text class="axis" x="%d" y="%d" text-anchor="middle">collecting samples…</text>`, padL+int(plotW/2), padT+int(plotH/2))
	} else {
		t0, t1 := c.Times[0], c.Times[len(c.Times)-1]
		span := t1.Sub(t0).Seconds()
		if span <= 0 {
			span = 1
		}
		x := func(t time.Time) float64 { return float64(padL) + plotW*t.Sub(t0).Seconds()/span }
		fmt.Fprintf(&b, `<text class="axis" x="%d" y="%d">-%s</text>`, padL, chartH-6, template.HTMLEscapeString(t1.Sub(t0).Round(time.Second).String()))
		fmt.Fprintf(&b, `<text class="axis" x="%d" y="%d" text-anchor="end">%s UTC</text>`, chartW-padR, chartH-6, t1.UTC().Format("15:04:05"))
		for _, s := range c.Series {
			var seg []string
			flush := func() {
				switch {
				case len(seg) == 1: // a lone sample between gaps: a dot
					xy := strings.SplitN(seg[0], ",", 2)
					fmt.Fprintf(&b, `<circle class="dot %s" cx="%s" cy="%s" r="2.5"/>`, s.Class, xy[0], xy[1])
				case len(seg) > 1:
					fmt.Fprintf(&b, `<polyline class="line %s" points="%s"/>`, s.Class, strings.Join(seg, " "))
				}
				seg = seg[:0]
			}
			for i, v := range s.Values {
				if i >= len(c.Times) || s.Missing[i] {
					flush()
					continue
				}
				seg = append(seg, fmt.Sprintf("%.1f,%.1f", x(c.Times[i]), float64(padT)+plotH*(1-v/top)))
			}
			flush()
		}
	}
	b.WriteString(`</svg><div class="legend">`)
	for _, s := range c.Series {
		last := ""
		for i := len(s.Values) - 1; i >= 0; i-- {
			if !s.Missing[i] {
				last = fmtNum(s.Values[i], c.Unit)
				break
			}
		}
		fmt.Fprintf(&b, `<span class="key %s">%s <b>%s</b></span>`, s.Class, template.HTMLEscapeString(s.Name), template.HTMLEscapeString(last))
	}
	b.WriteString(`</div></figure>`)
	return template.HTML(b.String())
}
