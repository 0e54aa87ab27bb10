// Command filtermail is the chatmail relay's filter daemon: it refuses mail
// that is not end-to-end encrypted and hands the rest back to Postfix.
//
//	filtermail CONFIG outgoing
//	filtermail CONFIG incoming
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"filtermail/config"
	"filtermail/smtpd"
)

// drainTimeout bounds how long a stopping filter waits for the
// transactions in flight.
const drainTimeout = 100 * time.Second

const usage = "usage: filtermail CONFIG outgoing|incoming, or filtermail --version"

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
	return serve(ctx, cfg, dir, log.New(stderr, "", 0))
}

// serve runs one filter until ctx is done, then lets the transactions in
// flight finish.
func serve(ctx context.Context, cfg *config.Config, dir smtpd.Direction, logger *log.Logger) error {
	port := cfg.SMTPPort
	if dir == smtpd.Incoming {
		port = cfg.SMTPPortIncoming
	}
	ln, err := smtpd.Listen(port)
	if err != nil {
		return err
	}
	srv := smtpd.New(cfg, dir, logger)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	logger.Printf("%s filter listening on port %d.", dir.Title(), port)

	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	logger.Printf("Stopping: finishing transactions in flight.")
	drain, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
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
