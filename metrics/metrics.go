// Package metrics holds filtermail's Prometheus metrics in a registry of
// their own. Every label value comes from a fixed set, whatever the
// traffic: no address, no host name, no free text.
package metrics

import (
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are one filter process's metrics. Each process filters one
// direction, and every metric but the build info carries it as a label.
// Every label set that can occur is exported from the start, at 0, so
// that Prometheus's increase() sees the first event.
type Metrics struct {
	reg *prometheus.Registry

	messages         *prometheus.CounterVec
	seipd            *prometheus.CounterVec
	reinject         *prometheus.CounterVec
	reinjectDuration prometheus.Observer
	processing       prometheus.Observer
	size             prometheus.Observer
	recipients       prometheus.Observer
	rateLimited      prometheus.Counter
	connections      prometheus.Gauge
	commands         *prometheus.CounterVec
	reloads          *prometheus.CounterVec
	dkim             *prometheus.CounterVec
	keyLookups       *prometheus.CounterVec
	mxdeliv          *prometheus.CounterVec
	transport        *transportMetrics // the transport's only
}

// New returns the metrics of a process for direction (Outgoing, Incoming
// or Transport), with the Go runtime's and the process's own collectors and
// the build info of version.
func New(direction, version string) *Metrics {
	reg := prometheus.NewRegistry()
	dir := prometheus.Labels{"direction": direction}
	f := factory{reg: reg, labels: dir}
	m := &Metrics{
		reg: reg,
		messages: f.counterVec("filtermail_messages_total",
			"Messages decided at end of DATA, by verdict and by the rule that decided.", "verdict", "reason"),
		seipd: f.counterVec("filtermail_openpgp_seipd_total",
			"Encrypted messages by the version of their SEIPD packet.", "version"),
		reinject: f.counterVec("filtermail_reinject_total",
			"Hand-overs of accepted messages to Postfix, by outcome.", "result"),
		reinjectDuration: f.histogram("filtermail_reinject_duration_seconds",
			"Time to hand a message to Postfix, connection included.", prometheus.ExponentialBuckets(0.001, 2.5, 12)),
		processing: f.histogram("filtermail_processing_duration_seconds",
			"Time from the end of DATA to the reply, hand-over to Postfix included.", prometheus.ExponentialBuckets(0.001, 2.5, 12)),
		size: f.histogram("filtermail_message_size_bytes",
			"Size of the messages received.", sizeBuckets),
		recipients: f.histogram("filtermail_recipients",
			"Recipients per message received.", []float64{1, 2, 3, 5, 10, 20, 50, 100, 1000}),
		rateLimited: f.counter("filtermail_rate_limited_total",
			"MAIL FROM commands refused because the sender was over its rate."),
		connections: f.gauge("filtermail_smtp_connections",
			"SMTP connections open now."),
		commands: f.counterVec("filtermail_smtp_commands_total",
			"SMTP commands by verb and by the class of the reply.", "command", "code_class"),
		reloads: f.counterVec("filtermail_reloads_total",
			"Reloads on SIGHUP, by outcome.", "result"),
		dkim: f.counterVec("filtermail_dkim_verifications_total",
			"DKIM checks of incoming mail that passed the other rules, by outcome.", "result"),
		keyLookups: f.counterVec("filtermail_dkim_key_lookups_total",
			"DKIM key lookups, by result; a key found in DNS by whether the answer was DNSSEC-authenticated.", "result"),
		mxdeliv: f.counterVec("filtermail_mxdeliv_requests_total",
			"Requests to the /mxdeliv listener, by HTTP status.", "status"),
	}
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "filtermail_build_info",
		Help:        "Always 1; the labels say which filtermail runs.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	info.Set(1)
	reg.MustRegister(info)

	for _, o := range Outcomes(direction) {
		m.messages.WithLabelValues(o.Verdict, o.Reason)
	}
	for _, v := range SEIPDVersions() {
		m.seipd.WithLabelValues(strconv.Itoa(v))
	}
	for _, r := range ReinjectResults() {
		m.reinject.WithLabelValues(r)
	}
	for _, c := range CommandReplies(direction) {
		m.commands.WithLabelValues(c.Command, c.Class)
	}
	for _, r := range ReloadResults() {
		m.reloads.WithLabelValues(r)
	}
	if direction == Incoming {
		for _, r := range DKIMResults() {
			m.dkim.WithLabelValues(r)
		}
		for _, r := range KeyLookupResults() {
			m.keyLookups.WithLabelValues(r)
		}
		for _, s := range MxdelivStatuses() {
			m.mxdeliv.WithLabelValues(strconv.Itoa(s))
		}
	}
	if direction == Transport {
		m.transport = newTransportMetrics(f)
	}
	return m
}

// sizeBuckets resolve the sizes that chat messages have: a text message
// is a few KiB, a picture some hundred KiB, a file or a video up to
// max_message_size, 30 MiB by default. They double up to 1 MiB, then grow
// by at most half up to 30 MiB.
var sizeBuckets = []float64{
	1 << 10, 2 << 10, 4 << 10, 8 << 10, 16 << 10, 32 << 10, 64 << 10, 128 << 10, 256 << 10, 512 << 10,
	1 << 20, 1.5 * (1 << 20), 2 << 20, 3 << 20, 4 << 20, 6 << 20, 8 << 20, 12 << 20, 16 << 20, 20 << 20, 25 << 20, 30 << 20,
}

// Handler serves the metrics in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Registry is where the metrics are registered, for tests and for
// collectors of other packages.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Message counts one decided message: verdict and reason are one of the
// direction's Outcomes.
func (m *Metrics) Message(verdict, reason string) {
	m.messages.WithLabelValues(verdict, reason).Inc()
}

// Received observes the size and the recipients of a message received in
// full.
func (m *Metrics) Received(size int64, recipients int) {
	m.size.Observe(float64(size))
	m.recipients.Observe(float64(recipients))
}

// SEIPD counts an encrypted message by its SEIPD packet's version.
func (m *Metrics) SEIPD(version int) {
	m.seipd.WithLabelValues(strconv.Itoa(version)).Inc()
}

// Reinject counts one hand-over to Postfix that took d.
func (m *Metrics) Reinject(result string, d time.Duration) {
	m.reinject.WithLabelValues(result).Inc()
	m.reinjectDuration.Observe(d.Seconds())
}

// Processed observes the time from the end of DATA to the reply.
func (m *Metrics) Processed(d time.Duration) { m.processing.Observe(d.Seconds()) }

// RateLimited counts a sender refused for its rate.
func (m *Metrics) RateLimited() { m.rateLimited.Inc() }

// ConnectionOpened and ConnectionClosed track the open SMTP connections.
func (m *Metrics) ConnectionOpened() { m.connections.Inc() }
func (m *Metrics) ConnectionClosed() { m.connections.Dec() }

// Command counts a command and the code of its reply. A code outside
// 200 to 599 is not an SMTP reply and is not counted.
func (m *Metrics) Command(verb string, code int) {
	if code < 200 || code > 599 {
		return
	}
	class := strconv.Itoa(code/100) + "xx"
	m.commands.WithLabelValues(commandLabel(strings.ToUpper(verb)), class).Inc()
}

// DKIM counts the outcome of one DKIM check, one of DKIMResults.
func (m *Metrics) DKIM(result string) { m.dkim.WithLabelValues(result).Inc() }

// KeyLookup counts one DKIM key lookup, its result one of
// KeyLookupResults.
func (m *Metrics) KeyLookup(result string) { m.keyLookups.WithLabelValues(result).Inc() }

// MxdelivRequest counts one request to the /mxdeliv listener answered with
// status. A status outside MxdelivStatuses is counted as 500.
func (m *Metrics) MxdelivRequest(status int) {
	if !slices.Contains(MxdelivStatuses(), status) {
		status = 500
	}
	m.mxdeliv.WithLabelValues(strconv.Itoa(status)).Inc()
}

// Reloaded counts a SIGHUP reload that worked (ok) or did not.
func (m *Metrics) Reloaded(ok bool) {
	result := ReloadFailed
	if ok {
		result = ReloadOK
	}
	m.reloads.WithLabelValues(result).Inc()
}

// factory registers metrics that carry the direction label.
type factory struct {
	reg    *prometheus.Registry
	labels prometheus.Labels
}

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: f.labels}, labels)
	f.reg.MustRegister(v)
	return v
}

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: f.labels})
	f.reg.MustRegister(c)
	return c
}

func (f factory) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: f.labels})
	f.reg.MustRegister(g)
	return g
}

func (f factory) histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, ConstLabels: f.labels, Buckets: buckets}, labels)
	f.reg.MustRegister(h)
	return h
}

func (f factory) histogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, ConstLabels: f.labels, Buckets: buckets})
	f.reg.MustRegister(h)
	return h
}
