package main

import (
	"fmt"
	"log"

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
