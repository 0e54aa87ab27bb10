package metrics

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Label values stay in fixed sets, whatever the client sends.
func TestCommandLabels(t *testing.T) {
	m := New(Outgoing, "test")
	for _, c := range []struct {
		verb string
		code int
	}{
		{"mail", 250}, {"MAIL", 450}, {"EHLO", 250}, {"alice@example.org", 500}, {"VRFY", 252},
		{strings.Repeat("X", 1000), 500}, {"", 500}, {"DATA", 354}, {EndOfData, 523}, {"QUIT", 0}, {"RCPT", 999},
	} {
		m.Command(c.verb, c.code)
	}
	moved := map[CommandReply]float64{
		{"MAIL", "2xx"}: 1, {"MAIL", "4xx"}: 1, {"EHLO", "2xx"}: 1, {OtherCommand, "5xx"}: 3,
		{OtherCommand, "2xx"}: 1, {"DATA", "3xx"}: 1, {EndOfData, "5xx"}: 1,
	}
	// Codes that are no SMTP replies are not counted; every series is
	// one of the direction's.
	if n, want := testutil.CollectAndCount(m.commands), len(CommandReplies(Outgoing)); n != want {
		t.Errorf("%d label sets, want %d", n, want)
	}
	for _, c := range CommandReplies(Outgoing) {
		if got := testutil.ToFloat64(m.commands.WithLabelValues(c.Command, c.Class)); got != moved[c] {
			t.Errorf("%v: %v, want %v", c, got, moved[c])
		}
		delete(moved, c)
	}
	for c := range moved {
		t.Errorf("%v moved but is not in CommandReplies", c)
	}
}

// Every label set of the fixed sets is there at 0 before anything
// happened, and no other.
func TestLabelSetsAtZero(t *testing.T) {
	for _, dir := range []string{Outgoing, Incoming} {
		m := New(dir, "test")
		var messages, commands, seipd []string
		for _, o := range Outcomes(dir) {
			messages = append(messages, o.Verdict+" "+o.Reason)
		}
		for _, c := range CommandReplies(dir) {
			commands = append(commands, c.Command+" "+c.Class)
		}
		for _, v := range SEIPDVersions() {
			seipd = append(seipd, strconv.Itoa(v))
		}
		for _, tt := range []struct {
			name   string
			labels []string
			want   []string
		}{
			{"filtermail_messages_total", []string{"verdict", "reason"}, messages},
			{"filtermail_smtp_commands_total", []string{"command", "code_class"}, commands},
			{"filtermail_openpgp_seipd_total", []string{"version"}, seipd},
			{"filtermail_reinject_total", []string{"result"}, ReinjectResults()},
			{"filtermail_reloads_total", []string{"result"}, ReloadResults()},
		} {
			got := series(t, m, tt.name, dir, tt.labels...)
			slices.Sort(got)
			want := slices.Sorted(slices.Values(tt.want))
			if !slices.Equal(got, want) {
				t.Errorf("%s %s: series %q, want %q", dir, tt.name, got, want)
			}
		}
	}
	// No two outcomes alike, and each verdict only with its reasons.
	for _, dir := range []string{Outgoing, Incoming} {
		reasons := map[string]string{}
		for _, o := range Outcomes(dir) {
			if v, ok := reasons[o.Reason]; ok {
				t.Errorf("%s: reason %s with verdicts %s and %s", dir, o.Reason, v, o.Verdict)
			}
			reasons[o.Reason] = o.Verdict
		}
	}
}

// series lists the label values, joined by spaces, of the metric name's
// series, failing on any that is not at 0 or lacks the direction.
func series(t *testing.T, m *Metrics, name, dir string, labels ...string) []string {
	t.Helper()
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, s := range f.GetMetric() {
			values := map[string]string{}
			for _, l := range s.GetLabel() {
				values[l.GetName()] = l.GetValue()
			}
			if values["direction"] != dir {
				t.Errorf("%s: direction %q, want %q", name, values["direction"], dir)
			}
			if v := s.GetCounter().GetValue(); v != 0 {
				t.Errorf("%s%v: %v at the start", name, values, v)
			}
			var key []string
			for _, l := range labels {
				key = append(key, values[l])
			}
			got = append(got, strings.Join(key, " "))
		}
	}
	return got
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
