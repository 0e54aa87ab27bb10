package main

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"time"

	"filtermail/config"
	"filtermail/policypages"
)

// renderPages renders the policy pages for cfg and logs what was wrong
// but did not stop them.
func renderPages(cfg *config.Config, logger *log.Logger) (*policypages.Site, error) {
	site, err := policypages.Render(cfg)
	if err != nil {
		return nil, fmt.Errorf("pages: %w", err)
	}
	for _, w := range site.Warnings {
		logger.Printf("Pages: %s", w)
	}
	return site, nil
}

// reloadPages renders the pages again from the config file. If the new
// config or the new pages are broken, the old pages stay.
func reloadPages(cfgPath string, pages *policypages.Handler, logger *log.Logger) {
	cfg, err := config.Load(cfgPath)
	if err == nil {
		var site *policypages.Site
		if site, err = renderPages(cfg, logger); err == nil {
			pages.Swap(site)
			logger.Printf("Reloaded: pages rendered again.")
			return
		}
	}
	logger.Printf("Reload failed, keeping the pages in use: %v", err)
}

// render writes the policy pages as static files into dir.
func render(cfgPath, dir string, logger *log.Logger) error {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return usageError{err}
	}
	site, err := renderPages(cfg, logger)
	if err != nil {
		return usageError{err}
	}
	if err := site.WriteDir(dir); err != nil {
		return err
	}
	logger.Printf("Wrote %d files to %s.", len(site.Files()), dir)
	return nil
}

// newSideServer returns the side HTTP listener's server: the pages and
// /healthz. It listens on loopback only, behind the relay's web server.
func newSideServer(pages http.Handler, logger *log.Logger) *http.Server {
	mux := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Exact paths, no ServeMux: a path that is not the page set's is
		// answered 404 by the pages, never redirected or cleaned.
		if r.URL.Path == "/healthz" {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			io.WriteString(w, "ok\n")
			return
		}
		pages.ServeHTTP(w, r)
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
