// Command filtermail is the chatmail relay's filter daemon: it refuses mail
// that is not end-to-end encrypted and hands the rest back to Postfix. A
// side HTTP listener serves the relay's policy pages.
//
//	filtermail CONFIG outgoing
//	filtermail CONFIG incoming
//	filtermail render CONFIG DIR
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"

	"filtermail/config"
	"filtermail/policypages"
	"filtermail/smtpd"
)

// drainTimeout bounds how long a stopping filter waits for the
// transactions in flight.
const drainTimeout = 100 * time.Second

const usage = "usage: filtermail CONFIG outgoing|incoming, filtermail render CONFIG DIR, or filtermail --version"

// usageError is an error in the command line or the config: exit code 2,
// before anything is bound.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "filtermail:", err)
	if errors.As(err, new(usageError)) {
		os.Exit(2)
	}
	os.Exit(1)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 1 && (args[0] == "--version" || args[0] == "-version") {
		fmt.Fprintln(stdout, "filtermail", version())
		return nil
	}
	logger := log.New(stderr, "", 0)
	if len(args) == 3 && args[0] == "render" {
		return render(args[1], args[2], logger)
	}
	if len(args) != 2 {
		return usageError{errors.New(usage)}
	}
	var dir smtpd.Direction
	switch args[1] {
	case "outgoing":
		dir = smtpd.Outgoing
	case "incoming":
		dir = smtpd.Incoming
	default:
		return usageError{fmt.Errorf("unknown mode %q: want outgoing or incoming", args[1])}
	}
	cfg, err := config.Load(args[0])
	if err != nil {
		return usageError{err}
	}
	return serve(ctx, args[0], cfg, dir, logger)
}

// serve runs one filter and its side HTTP listener until ctx is done, then
// lets the transactions in flight finish. SIGHUP renders the pages again
// from the config at cfgPath.
func serve(ctx context.Context, cfgPath string, cfg *config.Config, dir smtpd.Direction, logger *log.Logger) error {
	// A SIGHUP that comes while starting waits for the loop below.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	port, httpPort := cfg.SMTPPort, cfg.HTTPPort
	if dir == smtpd.Incoming {
		port, httpPort = cfg.SMTPPortIncoming, cfg.HTTPPortIncoming
	}
	// The side listener is bound first: once the SMTP port accepts, both
	// are up. Without it, the pages are not rendered at all.
	var side *http.Server
	var pages *policypages.Handler
	if httpPort != 0 {
		site, err := renderPages(cfg, logger)
		if err != nil {
			return usageError{err}
		}
		pages = policypages.NewHandler(site)
		httpLn, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(httpPort)))
		if err != nil {
			return fmt.Errorf("side HTTP listener: %w", err)
		}
		side = newSideServer(pages, logger)
		go side.Serve(httpLn)
		logger.Printf("%s pages listening on port %d.", dir.Title(), httpPort)
	}
	ln, err := smtpd.Listen(port)
	if err != nil {
		if side != nil {
			side.Close()
		}
		return err
	}

	srv := smtpd.New(cfg, dir, logger)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	logger.Printf("%s filter listening on port %d.", dir.Title(), port)

	for stopping := false; !stopping; {
		select {
		case err := <-done:
			if side != nil {
				side.Close()
			}
			return err
		case <-hup:
			if pages != nil {
				reloadPages(cfgPath, pages, logger)
			}
		case <-ctx.Done():
			stopping = true
		}
	}
	logger.Printf("Stopping: finishing transactions in flight.")
	drain, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	if side != nil {
		go side.Shutdown(drain)
	}
	if err := srv.Shutdown(drain); err != nil {
		logger.Printf("Stopped with transactions cut off: %v", err)
	}
	return <-done
}

func version() string {
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" {
		return info.Main.Version
	}
	return "(devel)"
}
