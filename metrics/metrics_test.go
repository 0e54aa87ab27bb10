package metrics

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

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
		// DKIM and /mxdeliv are the incoming filter's only.
		var dkim, keys, mxdeliv []string
		if dir == Incoming {
			dkim, keys = DKIMResults(), KeyLookupResults()
			for _, s := range MxdelivStatuses() {
				mxdeliv = append(mxdeliv, strconv.Itoa(s))
			}
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
			{"filtermail_dkim_verifications_total", []string{"result"}, dkim},
			{"filtermail_dkim_key_lookups_total", []string{"result"}, keys},
			{"filtermail_mxdeliv_requests_total", []string{"status"}, mxdeliv},
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

// The size buckets tell apart the sizes of chat messages, from a few KiB
// to max_message_size's default, 30 MiB.
func TestSizeBuckets(t *testing.T) {
	const defaultMax = 31457280
	if sizeBuckets[0] > 2<<10 || sizeBuckets[len(sizeBuckets)-1] != defaultMax {
		t.Errorf("buckets from %v to %v, want from at most 2 KiB up to 30 MiB", sizeBuckets[0], sizeBuckets[len(sizeBuckets)-1])
	}
	for i := 1; i < len(sizeBuckets); i++ {
		lo, hi := sizeBuckets[i-1], sizeBuckets[i]
		limit := 2.0
		if lo >= 1<<20 {
			limit = 1.5
		}
		if hi/lo > limit {
			t.Errorf("buckets %v and %v are %.2f times apart, want at most %v", lo, hi, hi/lo, limit)
		}
	}

	// Sizes that differ as chat messages do land in buckets of their own.
	sizes := []int64{3e3, 6e3, 40e3, 300e3, 700e3, 1.2e6, 2.5e6, 5e6, 9e6, 14e6, 19e6, 24e6, 29e6}
	m := New(Outgoing, "test")
	for _, size := range sizes {
		m.Received(size, 1)
	}
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "filtermail_message_size_bytes" {
			continue
		}
		prev := uint64(0)
		for _, b := range f.GetMetric()[0].GetHistogram().GetBucket() {
			if n := b.GetCumulativeCount() - prev; n > 1 {
				t.Errorf("%d of the sizes %v in the bucket up to %v", n, sizes, b.GetUpperBound())
			}
			prev = b.GetCumulativeCount()
		}
		if prev != uint64(len(sizes)) {
			t.Errorf("%d sizes in the buckets, want %d", prev, len(sizes))
		}
		return
	}
	t.Error("no filtermail_message_size_bytes")
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

// dashPanel is what the dashboard test reads of a Grafana panel.
type dashPanel struct {
	Type    string
	Title   string
	Targets []struct{ Expr string }
	Panels  []dashPanel // a row's panels
}

// selector matches a metric name and the label matchers after it.
var selector = regexp.MustCompile(`\b((?:filtermail|go|process)_[a-z_]+)(\{[^}]*\})?`)

// jobMatcher is how a query selects the jobs of the dashboard's $job.
const jobMatcher = `job=~"$job"`

// Every panel of the Grafana dashboard has a query, every query selects
// its series by the dashboard's $job, and every metric it queries exists.
func TestDashboard(t *testing.T) {
	data, err := os.ReadFile("grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	problems, n := dashboardProblems(t, data)
	for _, p := range problems {
		t.Error(p)
	}
	if n < 15 {
		t.Errorf("only %d metric names found in the dashboard", n)
	}
}

// The dashboard test finds each kind of fault.
func TestDashboardProblems(t *testing.T) {
	const vars = `"templating": {"list": [{"name": "job"}]}`
	good := `{"type": "stat", "title": "ok", "targets": [{"expr": "sum(filtermail_smtp_connections{job=~\"$job\"})"}]}`
	for name, tt := range map[string]struct {
		dash string
		want int
	}{
		"good":                    {`{` + vars + `, "panels": [` + good + `]}`, 0},
		"no job variable":         {`{"panels": [` + good + `]}`, 1},
		"panel without query":     {`{` + vars + `, "panels": [` + good + `, {"type": "timeseries", "title": "empty"}]}`, 1},
		"row panel without query": {`{` + vars + `, "panels": [{"type": "row", "title": "r", "panels": [{"type": "stat", "title": "empty", "targets": []}]}]}`, 1},
		"empty query":             {`{` + vars + `, "panels": [{"type": "stat", "title": "blank", "targets": [{"expr": ""}]}]}`, 1},
	} {
		if got, _ := dashboardProblems(t, []byte(tt.dash)); len(got) != tt.want {
			t.Errorf("%s: problems %q, want %d", name, got, tt.want)
		}
	}

	exported := exportedNames(t)
	for expr, want := range map[string]int{
		`sum(rate(filtermail_messages_total{job=~"$job",verdict="refuse"}[5m]))`:                                           0,
		`histogram_quantile(0.5, sum by (le) (rate(filtermail_message_size_bytes_bucket{job=~"$job"}[5m])))`:               0,
		`process_resident_memory_bytes{job=~"$job"}`:                                                                       0,
		`sum(rate(filtermail_messages_total[5m]))`:                                                                         1,
		`sum(rate(filtermail_messages_total{job=~"$job"}[5m])) / sum(rate(filtermail_messages_total{verdict="pass"}[5m]))`: 1,
		`filtermail_no_such_metric{job=~"$job"}`:                                                                           1,
		`sum(filtermail_smtp_connections{job="filtermail"})`:                                                               1,
	} {
		if got := queryProblems(expr, exported); len(got) != want {
			t.Errorf("%s: problems %q, want %d", expr, got, want)
		}
	}
}

// dashboardProblems lists what is wrong with a Grafana dashboard, and
// counts the metric names its queries use.
func dashboardProblems(t *testing.T, data []byte) (problems []string, names int) {
	t.Helper()
	var dash struct {
		Templating struct{ List []struct{ Name string } }
		Panels     []dashPanel
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(dash.Templating.List, func(v struct{ Name string }) bool { return v.Name == "job" }) {
		problems = append(problems, "the dashboard has no variable job")
	}
	exported := exportedNames(t)
	var check func(panels []dashPanel)
	check = func(panels []dashPanel) {
		for _, p := range panels {
			if p.Type == "row" {
				check(p.Panels)
				continue
			}
			if len(p.Targets) == 0 {
				problems = append(problems, fmt.Sprintf("panel %q has no query", p.Title))
			}
			for _, target := range p.Targets {
				for _, problem := range queryProblems(target.Expr, exported) {
					problems = append(problems, fmt.Sprintf("panel %q: %s", p.Title, problem))
				}
				names += len(selector.FindAllString(target.Expr, -1))
			}
		}
	}
	check(dash.Panels)
	return problems, names
}

// queryProblems lists what is wrong with a dashboard query: no metric, a
// metric filtermail does not export, or one not selected by $job.
func queryProblems(expr string, exported map[string]bool) []string {
	matches := selector.FindAllStringSubmatch(expr, -1)
	if len(matches) == 0 {
		return []string{fmt.Sprintf("query %q has no metric", expr)}
	}
	var problems []string
	for _, m := range matches {
		name, matchers := m[1], m[2]
		base := name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(name, suffix); ok && exported[b] {
				base = b
			}
		}
		if !exported[base] {
			problems = append(problems, fmt.Sprintf("queries %s, which filtermail does not export", name))
		}
		if !strings.Contains(matchers, jobMatcher) {
			problems = append(problems, fmt.Sprintf("queries %s%s without %s", name, matchers, jobMatcher))
		}
	}
	return problems
}

// exportedNames are the names of the metrics the filters export before
// they have handled anything, in either direction.
func exportedNames(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	for _, dir := range []string{Outgoing, Incoming, Transport} {
		families, err := New(dir, "test").Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			names[f.GetName()] = true
		}
	}
	return names
}
