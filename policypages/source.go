package policypages

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"slices"
	"strings"
)

// bundledFS holds the pages that ship with filtermail, in the same format
// as an operator's www_folder.
//
//go:embed bundled
var bundledFS embed.FS

// layoutFile is the HTML page every Markdown page is put into.
const layoutFile = "page-layout.html"

// placeholder in a Markdown page is replaced by the page's text from
// locales/<LANG>/<page>.md, one tab per language.
const placeholder = "%content placeholder%"

// source is a folder of page sources: Markdown pages, the layout, the
// assets, and locales/<LANG>/ with the translated texts.
type source struct {
	name string // for messages: the folder as the operator wrote it
	fsys fs.FS
	root *os.Root // the operator's folder; nil for the bundled pages
}

// close releases the folder.
func (s source) close() {
	if s.root != nil {
		s.root.Close()
	}
}

func bundledSource() source {
	sub, err := fs.Sub(bundledFS, "bundled")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return source{name: "bundled", fsys: sub}
}

// folderSource opens an operator's www_folder: its src/ folder if it has
// one, as the relay's repository lays it out, else the folder itself.
// Files are read through an os.Root, so a symbolic link cannot lead
// outside the folder.
func folderSource(dir string) (source, error) {
	if st, err := os.Stat(path.Join(dir, "src")); err == nil && st.IsDir() {
		dir = path.Join(dir, "src")
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return source{}, fmt.Errorf("www_folder: %w", err)
	}
	return source{name: dir, fsys: root.FS(), root: root}, nil
}

// file names a file of the source in messages.
func (s source) file(name string) string { return path.Join(s.name, name) }

func (s source) read(name string) (string, error) {
	b, err := fs.ReadFile(s.fsys, name)
	if err != nil {
		return "", fmt.Errorf("%s: %w", s.file(name), unwrapPath(err))
	}
	return string(b), nil
}

// unwrapPath drops the *fs.PathError wrapper, whose path would repeat the
// file name.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// entries lists the top-level files of the source: the pages (*.md) and
// the assets. Hidden files and editor swap files are left out, and so is
// everything that is not a regular file, or a link to one inside the
// folder; warn is told about links that lead elsewhere.
func (s source) entries(warn func(string)) (pages, assets []string, err error) {
	list, err := fs.ReadDir(s.fsys, ".")
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", s.name, unwrapPath(err))
	}
	for _, e := range list {
		name := e.Name()
		if strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".swp") || name == layoutFile {
			continue
		}
		st, err := fs.Stat(s.fsys, name)
		if err != nil {
			warn(fmt.Sprintf("%s: %v; not served", s.file(name), unwrapPath(err)))
			continue
		}
		if !st.Mode().IsRegular() {
			continue
		}
		if strings.HasSuffix(name, ".md") {
			pages = append(pages, name)
		} else {
			assets = append(assets, name)
		}
	}
	return pages, assets, nil
}

// locales maps the language codes under locales/ to their folder names.
func (s source) locales() map[string]string {
	list, err := fs.ReadDir(s.fsys, "locales")
	if err != nil {
		return nil
	}
	dirs := map[string]string{}
	for _, e := range list {
		if e.IsDir() {
			dirs[strings.ToUpper(e.Name())] = e.Name()
		}
	}
	return dirs
}

// allLanguages lists the codes of locales in the order ALL shows them:
// EN first, the others in alphabetical order.
func allLanguages(locales map[string]string) []string {
	codes := slices.Sorted(maps.Keys(locales))
	if i := slices.Index(codes, "EN"); i > 0 {
		codes = slices.Insert(slices.Delete(codes, i, i+1), 0, "EN")
	}
	return codes
}
