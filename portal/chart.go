package portal

import (
	"strconv"
	"time"

	"github.com/relais-broker/relais/broker/transparency"
)

// chartView is the server-side SVG bar chart of accesses per month, with
// its text alternative (Summary) and the same figures as a table.
type chartView struct {
	Width, Height, Baseline int
	Bars                    []barView
	Summary                 string
}

type barView struct {
	X, Y, W, H     int
	CenterX        int
	CountY, LabelY int
	Count          int
	Month, Short   string
}

// Chart geometry, in SVG user units.
const (
	chartSlot    = 68
	chartBar     = 40
	chartPlot    = 120
	chartTop     = 22
	chartLabels  = 24
	chartMonths  = 24
	chartPadding = 8
)

// buildChart counts the accesses per month (in loc) from the first month
// with one to the last, at most the last chartMonths months; nil when
// there is nothing to draw.
func buildChart(as []transparency.Access, loc *time.Location, lang string) *chartView {
	if len(as) == 0 {
		return nil
	}
	month := func(t time.Time) time.Time {
		t = t.In(loc)
		return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, loc)
	}
	counts := map[time.Time]int{}
	first, last := month(as[0].Time), month(as[0].Time)
	for _, a := range as {
		m := month(a.Time)
		counts[m]++
		if m.Before(first) {
			first = m
		}
		if m.After(last) {
			last = m
		}
	}
	if lim := last.AddDate(0, -(chartMonths - 1), 0); first.Before(lim) {
		first = lim
	}
	var months []time.Time
	for m := first; !m.After(last); m = m.AddDate(0, 1, 0) {
		months = append(months, m)
	}
	peak, total := 0, 0
	var peakMonth time.Time
	for _, m := range months {
		total += counts[m]
		if counts[m] > peak {
			peak, peakMonth = counts[m], m
		}
	}
	c := &chartView{Width: len(months)*chartSlot + 2*chartPadding, Height: chartTop + chartPlot + chartLabels, Baseline: chartTop + chartPlot}
	for i, m := range months {
		n := counts[m]
		h := 0
		if peak > 0 {
			h = n * chartPlot / peak
		}
		if n > 0 && h < 2 {
			h = 2
		}
		x := chartPadding + i*chartSlot + (chartSlot-chartBar)/2
		c.Bars = append(c.Bars, barView{
			X: x, Y: c.Baseline - h, W: chartBar, H: h, CenterX: x + chartBar/2, CountY: c.Baseline - h - 6, LabelY: c.Baseline + 17,
			Count: n, Month: formatMonth(m, lang, false), Short: formatMonth(m, lang, true),
		})
	}
	from, to := formatMonth(months[0], lang, false), formatMonth(months[len(months)-1], lang, false)
	if lang == langEN {
		c.Summary = "From " + from + " to " + to + ": " + countText(total, lang) + " in all; at most " + strconv.Itoa(peak) + " in " + formatMonth(peakMonth, lang, false) + "."
	} else {
		c.Summary = "De " + from + " à " + to + " : " + countText(total, lang) + " au total ; au plus " + strconv.Itoa(peak) + " en " + formatMonth(peakMonth, lang, false) + "."
	}
	return c
}
