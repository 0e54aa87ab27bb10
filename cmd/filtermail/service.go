package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"filtermail/activation"
	"filtermail/config"
	"filtermail/metrics"
	"filtermail/policypages"
	"filtermail/smtpd"
)

// drainTimeout bounds how long a stopping filter waits for the
// transactions in flight; the clients still connected then get a 421.
const drainTimeout = 100 * time.Second

// service is one running filter with its side HTTP listener.
type service struct {
	cfgPath string
	cfg     *config.Config // as at start: ports and sizes do not change
	dir     smtpd.Direction
	sockets *activation.Sockets // passed by systemd, if any
	log     *log.Logger
	debug   bool

	metrics *metrics.Metrics
	smtp    *smtpd.Server
	pages   *policypages.Handler // nil without a side listener
	side    *http.Server
}

// listener is one of a filter's listening ports, named by its config key.
type listener struct {
	key  string
	port int
}

// listeners are the filter's SMTP listener and, unless its port is 0, its
// side HTTP listener.
func (d *service) listeners() []listener {
	ls := []listener{{"filtermail_smtp_port", d.cfg.SMTPPort}, {"filtermail_http_port", d.cfg.HTTPPort}}
	if d.dir == smtpd.Incoming {
		ls = []listener{{"filtermail_smtp_port_incoming", d.cfg.SMTPPortIncoming}, {"filtermail_http_port_incoming", d.cfg.HTTPPortIncoming}}
	}
	if ls[1].port == 0 {
		return ls[:1]
	}
	return ls
}

// listenAll binds every listener of ls on filtermail_host, or takes the
// socket systemd passed for it. It binds all of them or none.
func (d *service) listenAll(ls []listener) ([]net.Listener, error) {
	var lns []net.Listener
	var err error
	for _, l := range ls {
		var ln net.Listener
		ln, err = d.sockets.Listen(l.key, net.JoinHostPort(d.cfg.FiltermailHost, strconv.Itoa(l.port)))
		if err != nil {
			break
		}
		lns = append(lns, ln)
	}
	if cerr := d.sockets.Close(); err == nil {
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
	if len(ls) > 1 {
		// Without a side listener, the pages are not rendered at all.
		var err error
		if site, err = renderPages(d.cfg); err != nil {
			return usageError{err}
		}
	}
	lns, err := d.listenAll(ls)
	if err != nil {
		return usageError{err}
	}

	d.metrics = metrics.New(d.dir.String(), version())
	d.smtp = smtpd.New(d.cfg, d.dir, d.log, d.metrics)
	d.smtp.SetDebug(d.debug)
	d.smtp.Listen(lns[0])
	serving := fmt.Sprintf("%s filter: SMTP on %s", d.dir.Title(), lns[0].Addr())
	if len(lns) > 1 {
		d.pages = policypages.NewHandler(site)
		d.side = newSideServer(d.pages, d.metrics.Handler(), d.smtp.Health, d.log)
		go d.side.Serve(lns[1])
		serving += fmt.Sprintf(", pages and metrics on http://%s", lns[1].Addr())
	}
	done := make(chan error, 1)
	go func() { done <- d.smtp.Serve() }()
	d.log.Printf("%s; entering serving loop.", serving)
	if site != nil {
		logWarnings(site, d.log)
	}
	notify(d.log, "READY=1")

	for stopping := false; !stopping; {
		select {
		case err := <-done:
			if d.side != nil {
				d.side.Close()
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
	if d.side != nil {
		go d.side.Shutdown(drain)
	}
	if err := d.smtp.Shutdown(drain); err != nil {
		d.log.Printf("Stopped with transactions cut off: %v", err)
	}
	return <-done
}
