// Package activation gives a daemon its listening sockets by name: those
// that systemd passed at start (socket activation: LISTEN_PID, LISTEN_FDS,
// LISTEN_FDNAMES), and for the rest sockets it binds itself. Each
// listener is named by the config key of its port, so a start-up error
// says which key is at fault.
package activation

import (
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// firstFD is the first file descriptor systemd passes (SD_LISTEN_FDS_START).
const firstFD = 3

// Sockets are the listening sockets a process was started with, by name.
type Sockets struct {
	files map[string]*os.File
	order []string // names in the order they were passed
}

// FromEnvironment takes over the sockets that systemd passed to this
// process and removes the variables that describe them, so that they are
// not passed on. Without LISTEN_FDS, or when LISTEN_PID names another
// process, there are none. Every socket passed must have a name
// (systemd's FileDescriptorName=), and no name may come twice.
func FromEnvironment() (*Sockets, error) {
	defer func() {
		os.Unsetenv("LISTEN_PID")
		os.Unsetenv("LISTEN_FDS")
		os.Unsetenv("LISTEN_FDNAMES")
	}()
	return parse(os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS"), os.Getenv("LISTEN_FDNAMES"), os.Getpid())
}

func parse(pid, fds, names string, self int) (*Sockets, error) {
	s := &Sockets{files: map[string]*os.File{}}
	if fds == "" || pid != strconv.Itoa(self) {
		return s, nil
	}
	n, err := strconv.Atoi(fds)
	if err != nil || n < 0 {
		return nil, fmt.Errorf("LISTEN_FDS: %q is not a number of sockets", fds)
	}
	list := strings.Split(names, ":")
	if names == "" || len(list) != n {
		return nil, fmt.Errorf("LISTEN_FDNAMES: %d names for %d sockets; name each socket by the config key of its port (FileDescriptorName=)", len(list), n)
	}
	for i, name := range list {
		if slices.Contains(list[:i], name) {
			return nil, fmt.Errorf("LISTEN_FDNAMES: %s is passed twice", name)
		}
	}
	for i, name := range list {
		fd := firstFD + i
		syscall.CloseOnExec(fd)
		s.files[name] = os.NewFile(uintptr(fd), name)
		s.order = append(s.order, name)
	}
	return s, nil
}

// Listen returns the socket passed under name, or, when none was, a new
// TCP socket bound to addr. Its errors name the key and the address:
// "filtermail_smtp_port: 127.0.0.1:10080 already in use".
func (s *Sockets) Listen(name, addr string) (net.Listener, error) {
	if f, ok := s.files[name]; ok {
		delete(s.files, name)
		defer f.Close()
		ln, err := net.FileListener(f)
		if err != nil {
			return nil, fmt.Errorf("%s: the socket passed is not a listening TCP socket: %w", name, err)
		}
		return ln, nil
	}
	ln, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("%s: %s already in use", name, addr)
	}
	if err != nil {
		var sysErr *os.SyscallError
		if errors.As(err, &sysErr) {
			err = sysErr.Err
		}
		return nil, fmt.Errorf("%s: cannot listen on %s: %w", name, addr, err)
	}
	return ln, nil
}

// Close closes the sockets that no Listen took and returns an error
// naming them: a socket passed for a listener this process does not have
// is a mistake in the units that pass it.
func (s *Sockets) Close() error {
	var unused []string
	for _, name := range s.order {
		if f, ok := s.files[name]; ok {
			f.Close()
			delete(s.files, name)
			unused = append(unused, name)
		}
	}
	if len(unused) > 0 {
		return fmt.Errorf("LISTEN_FDNAMES: %s passed but not a listener of this process", strings.Join(unused, ", "))
	}
	return nil
}
