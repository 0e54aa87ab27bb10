package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"filtermail/activation"
	"filtermail/config"
	"filtermail/filter"
	"filtermail/gate"
	"filtermail/metrics"
	"filtermail/mxdeliv"
	"filtermail/policypages"
	"filtermail/postfix"
	"filtermail/smtpd"
)

// drainTimeout bounds how long a stopping filter waits for the
// transactions in flight; the clients still connected then get a 421.
const drainTimeout = 100 * time.Second

// skipDKIMWarning is logged first when FILTERMAIL_SKIP_DKIM turns the DKIM
// check off, in the relay's words.
const skipDKIMWarning = "DKIM verification DISABLED! This should not be used in production."

// service is one running filter with its HTTP listeners.
type service struct {
	cfgPath  string
	cfg      *config.Config // as at start: ports and sizes do not change
	dir      gate.Direction
	sockets  *activation.Sockets // passed by systemd, if any
	log      *log.Logger
	debug    bool
	skipDKIM bool

	metrics *metrics.Metrics
	gate    *gate.Gate
	smtp    *smtpd.Server
	pages   *policypages.Handler // nil without a side listener
	http    []*http.Server
}

// The jobs of a filter's listeners.
type role int

const (
	roleSMTP    role = iota
	roleSide         // outgoing: pages, /metrics, /healthz
	roleMxdeliv      // incoming: POST /mxdeliv
	roleMetrics      // incoming: /metrics, /healthz
)

// listener is one of a filter's listening ports, named by its config key.
type listener struct {
	key  string
	port int
	role role
}

// listeners are the filter's SMTP listener and its HTTP listeners whose
// port is not 0.
func (d *service) listeners() []listener {
	all := []listener{
		{"filtermail_smtp_port", d.cfg.SMTPPort, roleSMTP},
		{"filtermail_http_port", d.cfg.HTTPPort, roleSide},
	}
	if d.dir == gate.Incoming {
		all = []listener{
			{"filtermail_smtp_port_incoming", d.cfg.SMTPPortIncoming, roleSMTP},
			{"filtermail_http_port_incoming", d.cfg.HTTPPortIncoming, roleMxdeliv},
			{"filtermail_metrics_port_incoming", d.cfg.MetricsPortIncoming, roleMetrics},
		}
	}
	var ls []listener
	for _, l := range all {
		if l.port != 0 {
			ls = append(ls, l)
		}
	}
	return ls
}

// listenAll binds every listener of ls on filtermail_host, or takes the
// socket systemd passed for it. It binds all of them or none.
func (d *service) listenAll(ls []listener) ([]net.Listener, error) {
	return listenAll(d.sockets, d.cfg.FiltermailHost, ls)
}

// listenAll binds every listener of ls on host, or takes the socket
// systemd passed for it. It binds all of them or none.
func listenAll(sockets *activation.Sockets, host string, ls []listener) ([]net.Listener, error) {
	var lns []net.Listener
	var err error
	for _, l := range ls {
		var ln net.Listener
		ln, err = sockets.Listen(l.key, net.JoinHostPort(host, strconv.Itoa(l.port)))
		if err != nil {
			break
		}
		lns = append(lns, ln)
	}
	if cerr := sockets.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		for _, ln := range lns {
			ln.Close()
		}
		return nil, err
	}
	return lns, nil
}

// run serves until ctx is done, then lets the transactions in flight
// finish. SIGHUP reloads the config and the pages. Every listener is
// bound before the first line is logged: a port that cannot be had is a
// usage error naming its key, and leaves nothing bound.
func (d *service) run(ctx context.Context) error {
	// A SIGHUP that comes while starting waits for the loop below.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	ls := d.listeners()
	var site *policypages.Site
	if slices.ContainsFunc(ls, func(l listener) bool { return l.role == roleSide }) {
		// Without a side listener, the pages are not rendered at all.
		var err error
		if site, err = renderPages(d.cfg); err != nil {
			return usageError{err}
		}
	}
	d.metrics = metrics.New(d.dir.String(), version())
	var origin gate.Verifier
	if d.dir == gate.Incoming && !d.skipDKIM {
		v, err := newVerifier(d.cfg, d.metrics)
		if err != nil {
			return usageError{err}
		}
		origin = v
	}
	lns, err := d.listenAll(ls)
	if err != nil {
		return usageError{err}
	}

	reinject := &postfix.Reinjector{Addr: net.JoinHostPort(d.cfg.PostfixHost, strconv.Itoa(d.reinjectPort()))}
	d.gate = gate.New(gate.Options{
		Direction:     d.dir,
		Policy:        filter.NewPolicy(d.cfg),
		SendPerMinute: d.cfg.MaxUserSendPerMinute,
		SendBurst:     d.cfg.MaxUserSendBurstSize,
		Origin:        origin,
		Handover:      reinject,
		Log:           d.log,
		Debug:         d.debug,
		Metrics:       d.metrics,
	})
	d.smtp = smtpd.New(smtpd.Options{
		Domain:          d.cfg.MailDomain,
		MaxMessageBytes: d.cfg.MaxMessageSize,
		Gate:            d.gate,
		Log:             d.log,
		Metrics:         d.metrics,
	})
	health := healthCheck(d.smtp.Health, reinject.Health)
	serving := []string{fmt.Sprintf("%s filter: SMTP on %s", d.dir.Title(), lns[0].Addr())}
	d.smtp.Listen(lns[0])
	for i, l := range ls[1:] {
		ln := lns[i+1]
		var srv *http.Server
		switch l.role {
		case roleSide:
			d.pages = policypages.NewHandler(site)
			srv = newSideServer(d.pages, d.metrics.Handler(), health, d.log)
			serving = append(serving, fmt.Sprintf("pages and metrics on http://%s", ln.Addr()))
		case roleMxdeliv:
			h := &mxdeliv.Handler{Gate: d.gate, MaxMessageBytes: d.cfg.MaxMessageSize, Log: d.log, Metrics: d.metrics}
			srv = mxdeliv.NewServer(h, d.log)
			ln = activation.LimitListener(ln, mxdeliv.MaxConnections)
			serving = append(serving, fmt.Sprintf("POST %s on http://%s", mxdeliv.Path, ln.Addr()))
		case roleMetrics:
			srv = newSideServer(http.NotFoundHandler(), d.metrics.Handler(), health, d.log)
			serving = append(serving, fmt.Sprintf("metrics on http://%s", ln.Addr()))
		}
		d.http = append(d.http, srv)
		go srv.Serve(ln)
	}
	done := make(chan error, 1)
	go func() { done <- d.smtp.Serve() }()
	if d.skipDKIM && d.dir == gate.Incoming {
		d.log.Print(skipDKIMWarning)
	}
	d.log.Printf("%s; entering serving loop.", strings.Join(serving, ", "))
	if site != nil {
		logWarnings(site, d.log)
	}
	notify(d.log, "READY=1")

	for stopping := false; !stopping; {
		select {
		case err := <-done:
			for _, srv := range d.http {
				srv.Close()
			}
			return err
		case <-hup:
			d.reload()
		case <-ctx.Done():
			stopping = true
		}
	}
	notify(d.log, "STOPPING=1")
	d.log.Printf("Stopping: finishing transactions in flight.")
	drain, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, srv := range d.http {
		wg.Go(func() {
			if srv.Shutdown(drain) != nil {
				srv.Close()
			}
		})
	}
	if err := d.smtp.Shutdown(drain); err != nil {
		d.log.Printf("Stopped with transactions cut off: %v", err)
	}
	wg.Wait()
	return <-done
}

// reinjectPort is the port of Postfix's reinjection smtpd for the filter's
// direction.
func (d *service) reinjectPort() int {
	if d.dir == gate.Incoming {
		return d.cfg.ReinjectPortIncoming
	}
	return d.cfg.ReinjectPort
}
