// Command filtermail is the chatmail relay's filter daemon: it refuses mail
// that is not end-to-end encrypted and hands the rest back to Postfix, and
// as the transport carries outbound mail to other relays. A side HTTP
// listener serves the relay's policy pages; every process serves
// Prometheus metrics.
//
//	filtermail [-v] CONFIG outgoing
//	filtermail [-v] CONFIG incoming
//	filtermail [-v] CONFIG transport
//	filtermail render CONFIG DIR
//	filtermail check CONFIG FILE.eml [--incoming]
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
	"slices"
	"strings"
	"syscall"

	"filtermail/activation"
	"filtermail/config"
	"filtermail/gate"
)

const usage = "usage: filtermail [-v] CONFIG outgoing|incoming|transport, filtermail render CONFIG DIR, " +
	"filtermail check CONFIG FILE.eml [--incoming], or filtermail --version"

// usageError is an error in the command line or the config: exit code 2,
// before anything is bound.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }

// refused is the exit of check for a message the filter refuses.
var refused = errors.New("refused")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case err == nil:
		return
	case err == refused:
		os.Exit(1)
	case errors.As(err, new(usageError)):
		fmt.Fprintln(os.Stderr, "filtermail:", err)
		os.Exit(2)
	}
	fmt.Fprintln(os.Stderr, "filtermail:", err)
	os.Exit(1)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 1 && (args[0] == "--version" || args[0] == "-version") {
		fmt.Fprintf(stdout, "filtermail %s (commit %s)\n", version(), commit())
		return nil
	}
	logger := log.New(stderr, "", 0)
	if len(args) > 0 && args[0] == "render" {
		if len(args) != 3 {
			return usageError{errors.New(usage)}
		}
		return render(args[1], args[2], logger)
	}
	if len(args) > 0 && args[0] == "check" {
		return check(args[1:], stdout)
	}
	debugLog := os.Getenv("FILTERMAIL_LOG") == "debug"
	if i := slices.IndexFunc(args, func(a string) bool { return a == "-v" || a == "--verbose" }); i >= 0 {
		debugLog = true
		args = slices.Delete(slices.Clone(args), i, i+1)
	}
	if len(args) != 2 {
		return usageError{errors.New(usage)}
	}
	var dir gate.Direction
	switch args[1] {
	case "outgoing":
		dir = gate.Outgoing
	case "incoming":
		dir = gate.Incoming
	case "transport":
	default:
		return usageError{fmt.Errorf("unknown mode %q: want outgoing, incoming or transport", args[1])}
	}
	cfg, err := config.Load(args[0])
	if err != nil {
		return usageError{err}
	}
	sockets, err := activation.FromEnvironment()
	if err != nil {
		return usageError{err}
	}
	if args[1] == "transport" {
		t := &transportService{cfg: cfg, sockets: sockets, log: logger, debug: debugLog}
		return t.run(ctx)
	}
	d := &service{cfgPath: args[0], cfg: cfg, dir: dir, sockets: sockets, log: logger, debug: debugLog,
		skipDKIM: skipDKIM(os.Getenv("FILTERMAIL_SKIP_DKIM"))}
	return d.run(ctx)
}

// skipDKIM reports whether the value of FILTERMAIL_SKIP_DKIM turns the
// DKIM check off: "1" or "true" in any case, as for the relay's own
// filtermail.
func skipDKIM(v string) bool { return v == "1" || strings.EqualFold(v, "true") }

// Set by the release build (scripts/release.sh) with -ldflags -X.
var (
	buildVersion string
	buildCommit  string
)

// version is the release's version, else the module's, else "(devel)".
func version() string {
	if buildVersion != "" {
		return buildVersion
	}
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" {
		return info.Main.Version
	}
	return "(devel)"
}

// commit is the commit the binary was built from: the release's stamp,
// else what the go command recorded, else "unknown".
func commit() string {
	if buildCommit != "" {
		return buildCommit
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", false
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if rev != "" && dirty {
			return rev + "-dirty"
		}
		if rev != "" {
			return rev
		}
	}
	return "unknown"
}
