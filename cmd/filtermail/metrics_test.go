package main

import (
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"filtermail/filter/filtertest"
	"filtermail/smtpd/smtpdtest"
)

// scrape is one reading of a daemon's /metrics: each sample by its name
// and labels, as `name{k="v",…}` with the labels sorted.
type scrape map[string]float64

func (d *daemon) scrape(t *testing.T) scrape {
	t.Helper()
	resp, err := http.Get(d.url("/metrics"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	s := scrape{}
	for name, f := range families {
		for _, m := range f.Metric {
			key := sampleKey(name, m.Label)
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				s[key] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				s[key] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				s[strings.Replace(key, name, name+"_count", 1)] = float64(h.GetSampleCount())
				s[strings.Replace(key, name, name+"_sum", 1)] = h.GetSampleSum()
			default:
				s[key] = m.GetUntyped().GetValue()
			}
		}
	}
	return s
}

func sampleKey(name string, labels []*dto.LabelPair) string {
	var parts []string
	for _, l := range labels {
		parts = append(parts, l.GetName()+`="`+l.GetValue()+`"`)
	}
	sort.Strings(parts)
	return name + "{" + strings.Join(parts, ",") + "}"
}

// wantDeltas fails unless every sample in want moved from before to after
// by exactly the given amount; samples missing before count as 0.
func wantDeltas(t *testing.T, before, after scrape, want map[string]float64) {
	t.Helper()
	for key, delta := range want {
		if got := after[key] - before[key]; got != delta {
			t.Errorf("%s moved by %v, want %v", key, got, delta)
		}
	}
}

func TestMetricsOutgoing(t *testing.T) {
	sink := newSink(t, smtpdtest.Accept)
	d := startDaemon(t, "outgoing", sink.Port,
		"passthrough_recipients = echo@chat.example.org",
		"max_user_send_per_minute = 60", "max_user_send_burst_size = 5")
	before := d.scrape(t)

	v4 := filtertest.Encrypted(alice, bob, filtertest.GoCryptoV4(t, []byte("hello")))
	v6 := filtertest.Encrypted(alice, bob, filtertest.GoCryptoV6(t, []byte("hello")))
	cleartext := filtertest.Plain(alice, bob, "hi", "hello")
	forged := filtertest.Encrypted("mallory@chat.example.org", bob, filtertest.GoCryptoV4(t, []byte("hi")))
	c := dial(t, d)
	wantReply(t, "v4", c.Send(alice, []string{bob}, v4), "250")
	wantReply(t, "v6", c.Send(alice, []string{bob, "carol@example.com"}, v6), "250")
	wantReply(t, "cleartext", c.Send(alice, []string{bob}, cleartext), encryptionNeeded)
	wantReply(t, "passthrough", c.Send(alice, []string{"echo@chat.example.org"}, cleartext), "250")
	wantReply(t, "forged", c.Send(alice, []string{bob}, forged), "500 Invalid FROM")
	// The burst of 5 is used up: the sixth MAIL is over the rate.
	wantReply(t, "rate", c.Cmd("MAIL FROM:<"+alice+">"), "450 4.7.1: Too much mail from <"+alice+">")
	wantReply(t, "unknown command", c.Cmd("FROBNICATE alice@chat.example.org"), "501")
	sink.SetMode(smtpdtest.TempFail)
	c2 := dial(t, d)
	dave := "dave@chat.example.org"
	fromDave := filtertest.Encrypted(dave, bob, filtertest.GoCryptoV4(t, []byte("hello")))
	wantReply(t, "sink busy", c2.Send(dave, []string{bob}, fromDave), "451 4.3.0 Sink is busy")
	c.Cmd("QUIT")
	c2.Cmd("QUIT")
	d.waitGauge(t, `filtermail_smtp_connections{direction="outgoing"}`, 0)

	after := d.scrape(t)
	dir := `direction="outgoing"`
	size := func(msgs ...[]byte) float64 {
		n := 0
		for _, m := range msgs {
			n += len(m)
		}
		return float64(n)
	}
	wantDeltas(t, before, after, map[string]float64{
		`filtermail_messages_total{` + dir + `,reason="encrypted",verdict="pass"}`:              3,
		`filtermail_messages_total{` + dir + `,reason="unencrypted",verdict="refuse"}`:          1,
		`filtermail_messages_total{` + dir + `,reason="passthrough_recipients",verdict="pass"}`: 1,
		`filtermail_messages_total{` + dir + `,reason="forged_from",verdict="refuse"}`:          1,
		`filtermail_openpgp_seipd_total{` + dir + `,version="1"}`:                               2,
		`filtermail_openpgp_seipd_total{` + dir + `,version="2"}`:                               1,
		`filtermail_reinject_total{` + dir + `,result="ok"}`:                                    3,
		`filtermail_reinject_total{` + dir + `,result="refused_4xx"}`:                           1,
		`filtermail_reinject_duration_seconds_count{` + dir + `}`:                               4,
		`filtermail_processing_duration_seconds_count{` + dir + `}`:                             6,
		`filtermail_message_size_bytes_count{` + dir + `}`:                                      6,
		`filtermail_message_size_bytes_sum{` + dir + `}`:                                        size(v4, v6, cleartext, cleartext, forged, fromDave),
		`filtermail_recipients_count{` + dir + `}`:                                              6,
		`filtermail_recipients_sum{` + dir + `}`:                                                7,
		`filtermail_rate_limited_total{` + dir + `}`:                                            1,
		`filtermail_smtp_commands_total{code_class="2xx",command="MAIL",` + dir + `}`:           6,
		`filtermail_smtp_commands_total{code_class="4xx",command="MAIL",` + dir + `}`:           1,
		`filtermail_smtp_commands_total{code_class="2xx",command="RCPT",` + dir + `}`:           7,
		`filtermail_smtp_commands_total{code_class="3xx",command="DATA",` + dir + `}`:           6,
		`filtermail_smtp_commands_total{code_class="2xx",command="END-OF-DATA",` + dir + `}`:    3,
		`filtermail_smtp_commands_total{code_class="5xx",command="END-OF-DATA",` + dir + `}`:    2,
		`filtermail_smtp_commands_total{code_class="4xx",command="END-OF-DATA",` + dir + `}`:    1,
		`filtermail_smtp_commands_total{code_class="2xx",command="EHLO",` + dir + `}`:           2,
		`filtermail_smtp_commands_total{code_class="2xx",command="QUIT",` + dir + `}`:           2,
		`filtermail_smtp_commands_total{code_class="5xx",command="other",` + dir + `}`:          1,
	})
	if key := buildInfo(after); !strings.Contains(key, `goversion="go1.`) || after[key] != 1 {
		t.Errorf("filtermail_build_info: %s", key)
	}
	for _, name := range []string{`go_goroutines{}`, `process_open_fds{}`} {
		if _, ok := after[name]; !ok {
			t.Errorf("no %s: the Go and process collectors are missing", name)
		}
	}
	checkNoAddresses(t, d)
}

// waitGauge waits until the sample key reads want.
func (d *daemon) waitGauge(t *testing.T, key string, want float64) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		got, ok := d.scrape(t)[key]
		if ok && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is %v, want %v", key, got, want)
		}
	}
}

// buildInfo finds the build info's sample.
func buildInfo(s scrape) string {
	for key := range s {
		if strings.HasPrefix(key, "filtermail_build_info{") {
			return key
		}
	}
	return ""
}

// checkNoAddresses fails if any line of /metrics holds an "@".
func checkNoAddresses(t *testing.T, d *daemon) {
	t.Helper()
	_, body := d.get(t, "/metrics")
	for _, line := range strings.Split(string(body), "\n") {
		if strings.Contains(line, "@") {
			t.Errorf("/metrics line holds an address: %s", line)
		}
	}
}

func TestMetricsIncoming(t *testing.T) {
	sink := newSink(t, smtpdtest.Accept)
	d := startDaemon(t, "incoming", sink.Port)
	strict := "strict@chat.example.org"
	d.mark(strict)
	before := d.scrape(t)

	c := dial(t, d)
	cleartext := filtertest.Plain(bob, strict, "hi", "hello")
	wantReply(t, "cleartext to strict", c.Send(bob, []string{strict}, cleartext), encryptionNeeded)
	wantReply(t, "cleartext to lax", c.Send(bob, []string{alice}, cleartext), "250")
	wantReply(t, "unsafe recipient", c.Send(bob, []string{"../x@chat.example.org"}, cleartext), encryptionNeeded)
	sink.Close()
	v6 := filtertest.Encrypted(bob, strict, filtertest.GoCryptoV6(t, []byte("hello")))
	// The envelope goes to Postfix first: RCPT is answered 451, and the
	// message is not judged.
	wantReply(t, "sink down", c.Send(bob, []string{strict}, v6), "451 4.4.1")
	sink = newSink(t, smtpdtest.Accept)
	d2 := startDaemon(t, "incoming", sink.Port)
	d2.mark(strict)
	before2 := d2.scrape(t)
	wantReply(t, "encrypted", dial(t, d2).Send(bob, []string{strict}, v6), "250")
	wantDeltas(t, before2, d2.scrape(t), map[string]float64{
		`filtermail_messages_total{direction="incoming",reason="encrypted",verdict="pass"}`: 1,
		`filtermail_openpgp_seipd_total{direction="incoming",version="2"}`:                  1,
	})

	d.waitGauge(t, `filtermail_smtp_connections{direction="incoming"}`, 1)
	after := d.scrape(t)
	dir := `direction="incoming"`
	wantDeltas(t, before, after, map[string]float64{
		`filtermail_messages_total{` + dir + `,reason="unencrypted",verdict="refuse"}`:     2,
		`filtermail_messages_total{` + dir + `,reason="cleartext_allowed",verdict="pass"}`: 1,
		`filtermail_reinject_total{` + dir + `,result="ok"}`:                               1,
		`filtermail_reinject_total{` + dir + `,result="unreachable"}`:                      1,
		`filtermail_smtp_commands_total{code_class="4xx",command="RCPT",` + dir + `}`:      1,
	})
	if _, ok := after[`filtermail_rate_limited_total{`+dir+`}`]; !ok {
		t.Error("filtermail_rate_limited_total missing")
	}
	checkNoAddresses(t, d)
}
