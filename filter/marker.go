package filter

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"syscall"
)

// MarkerLookup tells whether a local user refuses incoming cleartext.
type MarkerLookup interface {
	Marked(addr string) (bool, error)
}

// markerFile is the name of the file that marks a user who refuses
// incoming cleartext, in the user's mailbox directory.
const markerFile = "enforceE2EEincoming"

// Mailboxes finds markers as Dir/<address>/enforceE2EEincoming. Lookups
// never leave Dir, not even through symbolic links.
type Mailboxes struct {
	Dir string
}

// Marked reports whether addr has the marker. An address that cannot name
// a directory inside Dir safely counts as marked. A missing Dir or mailbox
// means no marker; other file-system errors are returned.
func (m Mailboxes) Marked(addr string) (bool, error) {
	addr = strings.ToLower(addr)
	if !safeMailboxName(addr) {
		return true, nil
	}
	root, err := os.OpenRoot(m.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("opening mailboxes_dir: %w", err)
	}
	defer root.Close()
	_, err = root.Stat(addr + "/" + markerFile)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR):
		return false, nil
	}
	// The path error would name the address; the log needs only the cause.
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return false, fmt.Errorf("looking up %s: %w", markerFile, err)
}

func safeMailboxName(addr string) bool {
	return strings.Contains(addr, "@") && addr[0] != '.' &&
		!strings.ContainsAny(addr, "/\\\x00") && !strings.Contains(addr, "..")
}
