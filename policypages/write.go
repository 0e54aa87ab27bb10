package policypages

import (
	"fmt"
	"os"
	"path/filepath"
)

// WriteDir writes the site's files into dir as static files, for a web
// server that serves them without filtermail. Each file is written to a
// temporary name first and then renamed, so that a reader never sees half
// a page.
func (s *Site) WriteDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, f := range s.Files() {
		if err := writeFile(dir, f); err != nil {
			return err
		}
	}
	return nil
}

func writeFile(dir string, f *File) error {
	tmp, err := os.CreateTemp(dir, "."+f.Name+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(f.Body); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", tmp.Name(), err)
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, f.Name))
}
