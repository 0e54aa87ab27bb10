package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"time"
)

// healthCheck joins checks into one that runs them all and reports every
// failure.
func healthCheck(checks ...func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		var errs []error
		for _, check := range checks {
			if err := check(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
}

// newSideServer returns the side HTTP listener's server: the pages,
// /metrics and /healthz. It listens on loopback only, behind the relay's
// web server, which must not publish /metrics or /healthz.
func newSideServer(pages, metrics http.Handler, health func(context.Context) error, logger *log.Logger) *http.Server {
	mux := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Exact paths, no ServeMux: a path outside the page set is
		// answered 404 by the pages, never redirected or cleaned.
		switch r.URL.Path {
		case "/metrics":
			metrics.ServeHTTP(w, r)
		case "/healthz":
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			if err := health(r.Context()); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintf(w, "%v\n", err)
				return
			}
			fmt.Fprintln(w, "ok")
		default:
			pages.ServeHTTP(w, r)
		}
	})
	return &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          logger,
	}
}
