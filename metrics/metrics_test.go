package metrics

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Label values stay in fixed sets, whatever the client sends.
func TestCommandLabels(t *testing.T) {
	m := New("outgoing", "test")
	for _, c := range []struct {
		verb string
		code int
	}{
		{"mail", 250}, {"MAIL", 450}, {"EHLO", 250}, {"alice@example.org", 500},
		{strings.Repeat("X", 1000), 500}, {"", 500}, {"DATA", 354}, {EndOfData, 523}, {"QUIT", 0}, {"RCPT", 999},
	} {
		m.Command(c.verb, c.code)
	}
	want := map[[2]string]float64{
		{"MAIL", "2xx"}: 1, {"MAIL", "4xx"}: 1, {"EHLO", "2xx"}: 1, {"other", "5xx"}: 3,
		{"DATA", "3xx"}: 1, {EndOfData, "5xx"}: 1, {"QUIT", "other"}: 1, {"RCPT", "other"}: 1,
	}
	if n := testutil.CollectAndCount(m.commands); n != len(want) {
		t.Errorf("%d label sets, want %d", n, len(want))
	}
	for labels, v := range want {
		if got := testutil.ToFloat64(m.commands.WithLabelValues(labels[0], labels[1])); got != v {
			t.Errorf("%v: %v, want %v", labels, got, v)
		}
	}
}

func TestRegistryLints(t *testing.T) {
	m := New("incoming", "v1.0.0")
	m.Message("pass", "encrypted")
	m.Received(1234, 2)
	problems, err := testutil.GatherAndLint(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if !strings.HasPrefix(p.Metric, "go_") && !strings.HasPrefix(p.Metric, "process_") {
			t.Errorf("%s: %s", p.Metric, p.Text)
		}
	}
}

// Every metric the Grafana dashboard queries exists.
func TestDashboardQueriesExist(t *testing.T) {
	m := New("outgoing", "test")
	m.Message("pass", "encrypted")
	m.Received(1, 1)
	m.SEIPD(2)
	m.Reinject(ReinjectOK, time.Millisecond)
	m.Processed(time.Millisecond)
	m.RateLimited()
	m.ConnectionOpened()
	m.Command("MAIL", 250)
	m.Reloaded(true)
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range families {
		names[f.GetName()] = true
	}
	data, err := os.ReadFile("grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatal(err)
	}
	used := regexp.MustCompile(`\b(filtermail|go|process)_[a-z_]+`)
	n := 0
	for _, p := range dash.Panels {
		for _, target := range p.Targets {
			for _, name := range used.FindAllString(target.Expr, -1) {
				n++
				base := name
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if b, ok := strings.CutSuffix(name, suffix); ok && names[b] {
						base = b
					}
				}
				if !names[base] {
					t.Errorf("panel %q queries %s, which filtermail does not export", p.Title, name)
				}
			}
		}
	}
	if n < 15 {
		t.Errorf("only %d metric names found in the dashboard", n)
	}
}
