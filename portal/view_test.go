package portal

import (
	"net/url"
	"testing"
	"time"

	"github.com/relais-broker/relais/broker/transparency"
)

func paris(t *testing.T) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestDatesInParisTime(t *testing.T) {
	loc := paris(t)
	summer := time.Date(2026, 7, 1, 8, 5, 0, 0, time.UTC)
	winter := time.Date(2026, 12, 24, 23, 30, 0, 0, time.UTC)
	for _, tc := range []struct {
		at         time.Time
		lang, want string
	}{
		{summer, langFR, "1er juillet 2026 à 10:05"},
		{summer, langEN, "1 July 2026, 10:05"},
		{winter, langFR, "25 décembre 2026 à 00:30"},
	} {
		if got := formatDateTime(tc.at, loc, tc.lang); got != tc.want {
			t.Errorf("formatDateTime(%v, %s) = %q, want %q", tc.at, tc.lang, got, tc.want)
		}
	}
}

func TestParseFilterDaysAreParisDays(t *testing.T) {
	loc := paris(t)
	f, fv := parseFilter(url.Values{"from": {"2026-03-01"}, "to": {"2026-03-31"}, "body": {"21690123100011"}}, loc, langFR)
	if len(fv.Errors) != 0 {
		t.Fatal(fv.Errors)
	}
	if !f.From.Equal(time.Date(2026, 2, 28, 23, 0, 0, 0, time.UTC)) || !f.To.Equal(time.Date(2026, 3, 31, 22, 0, 0, 0, time.UTC)) || f.Body != "21690123100011" {
		t.Errorf("filter %+v", f)
	}
	_, fv = parseFilter(url.Values{"from": {"<script>" + string(make([]byte, 100))}}, loc, langEN)
	if len(fv.Errors) != 1 || fv.Errors[0].Field != "from" || len(fv.From) > 32 {
		t.Errorf("bad from: %+v", fv)
	}
}

func TestChart(t *testing.T) {
	loc := paris(t)
	at := func(y int, m time.Month, d int) transparency.Access {
		return transparency.Access{Time: time.Date(y, m, d, 12, 0, 0, 0, loc)}
	}
	if buildChart(nil, loc, langFR) != nil {
		t.Error("a chart of nothing")
	}
	c := buildChart([]transparency.Access{at(2026, 5, 3), at(2026, 3, 1), at(2026, 3, 31), at(2026, 5, 9), at(2026, 5, 20)}, loc, langFR)
	var counts []int
	for _, b := range c.Bars {
		counts = append(counts, b.Count)
	}
	if len(counts) != 3 || counts[0] != 2 || counts[1] != 0 || counts[2] != 3 {
		t.Fatalf("counts %v, want mars 2, avril 0, mai 3", counts)
	}
	if c.Bars[2].H != chartPlot || c.Bars[1].H != 0 || c.Bars[0].Month != "mars 2026" || c.Bars[0].Short != "mars 26" {
		t.Errorf("bars %+v", c.Bars)
	}
	if c.Summary != "De mars 2026 à mai 2026 : 5 consultations au total ; au plus 3 en mai 2026." {
		t.Errorf("summary %q", c.Summary)
	}
	// At most chartMonths months, the latest.
	c = buildChart([]transparency.Access{at(2020, 1, 1), at(2026, 6, 1)}, loc, langEN)
	if len(c.Bars) != chartMonths || c.Bars[len(c.Bars)-1].Month != "June 2026" {
		t.Errorf("%d bars, last %q", len(c.Bars), c.Bars[len(c.Bars)-1].Month)
	}
}
