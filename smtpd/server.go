// Package smtpd is the SMTP front end of a filter: a go-smtp server that
// Postfix hands mail to. It keeps the session (RCPT-parameter tolerance,
// size limits, timeouts, draining on stop) and leaves judging and the
// hand-over of each message to package gate.
package smtpd

import (
	"context"
	"log"
	"net"
	"time"

	"github.com/emersion/go-smtp"

	"filtermail/activation"
	"filtermail/gate"
	"filtermail/metrics"
)

// Limits of the SMTP server.
const (
	// readTimeout bounds each read: a command, or the next bytes of a
	// message's body (a slow sender is fine, a stalled one is not), as
	// Postfix's smtpd_timeout.
	readTimeout   = 5 * time.Minute
	writeTimeout  = time.Minute
	maxRecipients = 1000 // Postfix's smtpd_recipient_limit
	// MaxConnections bounds the SMTP connections served at once; past it,
	// new ones wait in the listen queue until one closes. Postfix opens
	// one for each of its smtpd processes (default_process_limit, 100).
	MaxConnections = 1000
	// stressTimeout is what a command may take, from the one before,
	// while MaxConnections are open: Postfix's smtpd_timeout under
	// stress, ${stress?10s}.
	stressTimeout = 10 * time.Second
)

// Options configure a Server.
type Options struct {
	Domain          string // the name in the greeting
	MaxMessageBytes int64  // larger messages get 552
	Gate            *gate.Gate
	Log             *log.Logger
	Metrics         *metrics.Metrics
}

// Server is the SMTP front end of one filter.
type Server struct {
	gate    *gate.Gate
	log     *log.Logger
	metrics *metrics.Metrics
	smtp    *smtp.Server
	ln      *paramListener
	// idle is readTimeout, shorter in tests.
	idle time.Duration
}

// New returns the SMTP front end of the filter whose gate is o.Gate.
func New(o Options) *Server {
	s := &Server{gate: o.Gate, log: o.Log, metrics: o.Metrics, idle: readTimeout}
	srv := smtp.NewServer(backend{s})
	srv.Domain = o.Domain
	srv.ReadTimeout = readTimeout
	srv.WriteTimeout = writeTimeout
	srv.MaxRecipients = maxRecipients
	srv.MaxMessageBytes = o.MaxMessageBytes
	srv.MaxLineLength = 0 // body lines of any length; commands are bounded by paramConn
	srv.EnableSMTPUTF8 = true
	srv.EnableDSN = true // accept RET and ENVID on MAIL FROM
	srv.ErrorLog = PrivateLogger{o.Log}
	s.smtp = srv
	return s
}

// Listen makes ln the filter's SMTP listener, which Serve answers on, at
// most MaxConnections at once.
func (s *Server) Listen(ln net.Listener) {
	s.smtp.ReadTimeout = s.idle
	s.ln = newParamListener(activation.LimitListener(ln, MaxConnections), s.metrics, s.idle, s.smtp.MaxMessageBytes)
	s.ln.log = s.log
}

// Serve answers SMTP connections on the listener given to Listen until
// Shutdown.
func (s *Server) Serve() error {
	err := s.smtp.Serve(s.ln)
	if err == smtp.ErrServerClosed {
		return nil
	}
	return err
}

// Shutdown stops accepting connections and lets the open ones finish the
// transaction they are in; connections between transactions get a 421 and
// close. When ctx is done first, the connections still open get a 421 and
// are closed.
func (s *Server) Shutdown(ctx context.Context) error {
	s.ln.drain()
	err := s.smtp.Shutdown(ctx)
	if err != nil {
		s.ln.cutOff()
	}
	return err
}

type backend struct{ s *Server }

func (b backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &session{s: b.s, conn: c.Conn().(*paramConn)}, nil
}
