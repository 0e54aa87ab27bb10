package main

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"filtermail/activation"
	"filtermail/config"
	"filtermail/dns"
	"filtermail/metrics"
	"filtermail/transport"
)

// transportService is the transport process: LMTP from Postfix, delivery
// to other relays, and its metrics listener.
type transportService struct {
	cfg     *config.Config
	sockets *activation.Sockets
	log     *log.Logger
	debug   bool
}

// run serves until ctx is done, then lets the deliveries in flight
// finish. Every listener is bound before the first line is logged.
func (d *transportService) run(ctx context.Context) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	r, err := dns.NewResolver(d.cfg.DNSResolver)
	if err != nil {
		return usageError{fmt.Errorf("filtermail_dns_resolver: %w", err)}
	}
	// Every delivery asks for MX, MTA-STS and often address records:
	// answers are kept for their TTL.
	resolver := dns.NewCache(r, 0)
	ls := []listener{{"filtermail_lmtp_port_transport", d.cfg.LMTPPortTransport, roleSMTP}}
	if d.cfg.MetricsPortTransport != 0 {
		ls = append(ls, listener{"filtermail_metrics_port_transport", d.cfg.MetricsPortTransport, roleMetrics})
	}
	lns, err := listenAll(d.sockets, d.cfg.FiltermailHost, ls)
	if err != nil {
		return usageError{err}
	}
	m := metrics.New(metrics.Transport, version())
	t := transport.New(transport.Options{
		Domain:   d.cfg.MailDomain,
		Resolver: resolver,
		// Postfix queued at most max_message_size, but sends it with
		// CRLF line ends: a little more.
		MaxMessageBytes: 2 * d.cfg.MaxMessageSize,
		Log:             d.log,
		Debug:           d.debug,
		Metrics:         m,
	})
	done := make(chan error, 1)
	go func() { done <- t.Serve(lns[0]) }()
	serving := fmt.Sprintf("Transport: LMTP on %s", lns[0].Addr())
	var side *http.Server
	if len(lns) > 1 {
		side = newSideServer(http.NotFoundHandler(), m.Handler(), t.Health, d.log)
		go side.Serve(lns[1])
		serving += fmt.Sprintf(", metrics on http://%s", lns[1].Addr())
	}
	d.log.Printf("%s; entering serving loop.", serving)
	notify(d.log, "READY=1")

	for stopping := false; !stopping; {
		select {
		case err := <-done:
			if side != nil {
				side.Close()
			}
			return err
		case <-hup:
			d.log.Printf("Reload: the transport has nothing to reload.")
		case <-ctx.Done():
			stopping = true
		}
	}
	notify(d.log, "STOPPING=1")
	d.log.Printf("Stopping: finishing deliveries in flight.")
	drain, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	if err := t.Shutdown(drain); err != nil {
		d.log.Printf("Stopped with deliveries cut off (Postfix keeps their mail): %v", err)
	}
	if side != nil && side.Shutdown(drain) != nil {
		side.Close()
	}
	return <-done
}
