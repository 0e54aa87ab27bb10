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
	log     *log.Logger
	debug   bool

	metrics *metrics.Metrics
	smtp    *smtpd.Server
	pages   *policypages.Handler // nil without a side listener
	side    *http.Server
}

// run serves until ctx is done, then lets the transactions in flight
// finish. SIGHUP reloads the config and the pages.
func (d *service) run(ctx context.Context) error {
	// A SIGHUP that comes while starting waits for the loop below.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	port, httpPort := d.ports()
	d.metrics = metrics.New(d.dir.String(), version())
	d.smtp = smtpd.New(d.cfg, d.dir, d.log, d.metrics)
	d.smtp.SetDebug(d.debug)

	// The side listener is bound first: once the SMTP port accepts, both
	// are up. Without it, the pages are not rendered at all.
	if httpPort != 0 {
		site, err := renderPages(d.cfg, d.log)
		if err != nil {
			return usageError{err}
		}
		d.pages = policypages.NewHandler(site)
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(httpPort)))
		if err != nil {
			return fmt.Errorf("side HTTP listener: %w", err)
		}
		d.side = newSideServer(d.pages, d.metrics.Handler(), d.smtp.Health, d.log)
		go d.side.Serve(ln)
		d.log.Printf("%s pages and metrics listening on port %d.", d.dir.Title(), httpPort)
	}
	if err := d.smtp.Listen(port); err != nil {
		if d.side != nil {
			d.side.Close()
		}
		return err
	}
	done := make(chan error, 1)
	go func() { done <- d.smtp.Serve() }()
	d.log.Printf("%s filter listening on port %d.", d.dir.Title(), port)
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

func (d *service) ports() (smtpPort, httpPort int) {
	if d.dir == smtpd.Incoming {
		return d.cfg.SMTPPortIncoming, d.cfg.HTTPPortIncoming
	}
	return d.cfg.SMTPPort, d.cfg.HTTPPort
}
