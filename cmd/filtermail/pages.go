package main

import (
	"fmt"
	"log"

	"filtermail/config"
	"filtermail/policypages"
)

// renderPages renders the policy pages for cfg.
func renderPages(cfg *config.Config) (*policypages.Site, error) {
	site, err := policypages.Render(cfg)
	if err != nil {
		return nil, fmt.Errorf("pages: %w", err)
	}
	return site, nil
}

// logWarnings logs what was wrong with the pages but did not stop them.
func logWarnings(site *policypages.Site, logger *log.Logger) {
	for _, w := range site.Warnings {
		logger.Printf("Pages: %s", w)
	}
}

// render writes the policy pages as static files into dir.
func render(cfgPath, dir string, logger *log.Logger) error {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return usageError{err}
	}
	site, err := renderPages(cfg)
	if err != nil {
		return usageError{err}
	}
	logWarnings(site, logger)
	if err := site.WriteDir(dir); err != nil {
		return err
	}
	logger.Printf("Wrote %d files to %s.", len(site.Files()), dir)
	return nil
}
