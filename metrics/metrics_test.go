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
