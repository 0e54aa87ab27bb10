package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Transport is the direction label of the transport process: mail that
// leaves for other relays.
const Transport = "transport"

// The channel label of the transport's metrics: how a delivery reached
// the other relay, or none when it reached no relay (DNS, no mail
// exchanger reachable).
const (
	ChannelHTTPS = "https"
	ChannelSMTP  = "smtp"
	ChannelNone  = "none"
)

// TransportChannels lists the values of the channel label.
func TransportChannels() []string { return []string{ChannelHTTPS, ChannelSMTP, ChannelNone} }

// The outcome label of filtermail_transport_deliveries_total: how Postfix
// takes the reply to a recipient.
const (
	DeliveryDelivered = "delivered" // 2xx
	DeliveryDeferred  = "deferred"  // 4xx: Postfix tries again
	DeliveryBounced   = "bounced"   // 5xx: Postfix returns the mail
)

// TransportOutcomes lists the values of the outcome label.
func TransportOutcomes() []string {
	return []string{DeliveryDelivered, DeliveryDeferred, DeliveryBounced}
}

// The limit label of filtermail_transport_busy_total: which bound made the
// transport answer "Transport busy".
const (
	BusyTotal  = "total"  // every delivery slot taken
	BusyDomain = "domain" // every slot for one destination domain taken
	BusyMemory = "memory" // the memory budget for messages in flight used up
)

// BusyLimits lists the values of the limit label.
func BusyLimits() []string { return []string{BusyTotal, BusyDomain, BusyMemory} }

// TLSPolicies lists the values of the tls_policy label: where the TLS
// that an SMTP connection needed came from.
func TLSPolicies() []string { return []string{"dane", "mta-sts", "none"} }

// transportMetrics are the transport's own metrics.
type transportMetrics struct {
	deliveries       *prometheus.CounterVec
	duration         *prometheus.HistogramVec
	inFlight         prometheus.Gauge
	busy             *prometheus.CounterVec
	httpsUnavailable prometheus.Counter
	smtpSessions     *prometheus.CounterVec
	suspended        prometheus.Counter
}

func newTransportMetrics(f factory) *transportMetrics {
	t := &transportMetrics{
		deliveries: f.counterVec("filtermail_transport_deliveries_total",
			"Recipients delivered to other relays, by channel and by how Postfix takes the reply.", "channel", "outcome"),
		duration: f.histogramVec("filtermail_transport_delivery_duration_seconds",
			"Time of one delivery to a destination domain, DNS included, by the channel that answered.",
			prometheus.ExponentialBuckets(0.005, 2.5, 12), "channel"),
		inFlight: f.gauge("filtermail_transport_deliveries_in_flight",
			"Deliveries to destination domains in flight now."),
		busy: f.counterVec("filtermail_transport_busy_total",
			"Commands answered \"Transport busy\", by the bound that was reached.", "limit"),
		httpsUnavailable: f.counter("filtermail_transport_https_unavailable_total",
			"Deliveries to a mail exchanger whose POST /mxdeliv gave no answer, so that SMTP was tried."),
		smtpSessions: f.counterVec("filtermail_transport_smtp_sessions_total",
			"SMTP connections to other relays made, by the TLS policy that applied: DANE, MTA-STS or none (the transport's own rule).", "tls_policy"),
	}
	t.suspended = f.counter("filtermail_transport_suspended_total",
		"Recipients answered 451 at once because no relay of their domain could be reached lately.")
	for _, p := range TLSPolicies() {
		t.smtpSessions.WithLabelValues(p)
	}
	for _, ch := range TransportChannels() {
		t.duration.WithLabelValues(ch)
		for _, o := range TransportOutcomes() {
			t.deliveries.WithLabelValues(ch, o)
		}
	}
	for _, l := range BusyLimits() {
		t.busy.WithLabelValues(l)
	}
	return t
}

// DeliveryStarted counts a delivery to a destination domain in flight.
func (m *Metrics) DeliveryStarted() { m.transport.inFlight.Inc() }

// DeliveryEnded counts the end of a delivery, which took d and was
// answered over channel.
func (m *Metrics) DeliveryEnded(channel string, d time.Duration) {
	m.transport.inFlight.Dec()
	m.transport.duration.WithLabelValues(channel).Observe(d.Seconds())
}

// Delivered counts the reply to one recipient: its channel and outcome.
func (m *Metrics) Delivered(channel, outcome string) {
	m.transport.deliveries.WithLabelValues(channel, outcome).Inc()
}

// Busy counts a command answered "Transport busy" because of limit.
func (m *Metrics) Busy(limit string) { m.transport.busy.WithLabelValues(limit).Inc() }

// HTTPSUnavailable counts a mail exchanger whose /mxdeliv gave no answer.
func (m *Metrics) HTTPSUnavailable() { m.transport.httpsUnavailable.Inc() }

// SMTPSession counts an SMTP connection made under tlsPolicy, one of
// TLSPolicies.
func (m *Metrics) SMTPSession(tlsPolicy string) {
	m.transport.smtpSessions.WithLabelValues(tlsPolicy).Inc()
}

// Suspended counts a recipient answered 451 at once because its domain is
// suspended.
func (m *Metrics) Suspended() { m.transport.suspended.Inc() }
