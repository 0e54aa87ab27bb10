package filter

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"syscall"
)

// MarkerLookup tells what the marker files of a local user say: whether
// the user refuses incoming cleartext, and whether the account is
// disabled.
type MarkerLookup interface {
	Marked(addr string) (bool, error)
	Disabled(addr string) (bool, error)
}

// The marker files in a user's mailbox directory: markerFile marks a user
// who refuses incoming cleartext, disabledFile a disabled account.
const (
	markerFile   = "enforceE2EEincoming"
	disabledFile = "DISABLED"
)

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
	return m.has(addr, markerFile)
}

// Disabled reports whether addr's account has the DISABLED marker. An
// address that cannot name a directory inside Dir safely is not disabled:
// Postfix answers for it.
func (m Mailboxes) Disabled(addr string) (bool, error) {
	addr = strings.ToLower(addr)
	if !safeMailboxName(addr) {
		return false, nil
	}
	return m.has(addr, disabledFile)
}

// has reports whether the mailbox directory of addr holds the file name.
func (m Mailboxes) has(addr, name string) (bool, error) {
	root, err := os.OpenRoot(m.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("opening mailboxes_dir: %w", err)
	}
	defer root.Close()
	_, err = root.Stat(addr + "/" + name)
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
	return false, fmt.Errorf("looking up %s: %w", name, err)
}

func safeMailboxName(addr string) bool {
	return strings.Contains(addr, "@") && addr[0] != '.' &&
		!strings.ContainsAny(addr, "/\\\x00") && !strings.Contains(addr, "..")
}
