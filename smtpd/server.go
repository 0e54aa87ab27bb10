// Package smtpd is the SMTP side of filtermail: a go-smtp server that
// Postfix hands mail to, which judges each message with package filter
// and reinjects what passes into Postfix.
package smtpd

import (
	"context"
	"log"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"filtermail/config"
	"filtermail/filter"
	"filtermail/metrics"
)

// Direction is the way mail flows through a filter.
type Direction int

const (
	Outgoing Direction = iota // from local users, after submission
	Incoming                  // from the internet, to local users
)

func (d Direction) String() string {
	if d == Incoming {
		return "incoming"
	}
	return "outgoing"
}

// Title is the direction as the relay's log lines spell it.
func (d Direction) Title() string {
	if d == Incoming {
		return "Incoming"
	}
	return "Outgoing"
}

// Limits of the SMTP server.
const (
	readTimeout   = 5 * time.Minute // Postfix's smtpd_timeout
	writeTimeout  = time.Minute
	maxRecipients = 1000 // Postfix's smtpd_recipient_limit
)

// Server is one filter: it listens for Postfix, judges, and reinjects.
type Server struct {
	dir      Direction
	policy   atomic.Pointer[filter.Policy]
	limiter  *rateLimiter // outgoing only
	reinject reinjector
	log      *log.Logger
	debug    bool
	metrics  *metrics.Metrics
	smtp     *smtp.Server
	ln       *paramListener
}

// New returns the filter for one direction, configured by c, logging to
// logger and counting in m.
func New(c *config.Config, dir Direction, logger *log.Logger, m *metrics.Metrics) *Server {
	s := &Server{
		dir:     dir,
		log:     logger,
		metrics: m,
	}
	s.policy.Store(filter.NewPolicy(c))
	port := c.ReinjectPort
	if dir == Incoming {
		port = c.ReinjectPortIncoming
	} else {
		s.limiter = newRateLimiter(c.MaxUserSendPerMinute, c.MaxUserSendBurstSize)
	}
	s.reinject.addr = net.JoinHostPort(c.PostfixHost, strconv.Itoa(port))

	srv := smtp.NewServer(backend{s})
	srv.Domain = c.MailDomain
	srv.ReadTimeout = readTimeout
	srv.WriteTimeout = writeTimeout
	srv.MaxRecipients = maxRecipients
	srv.MaxMessageBytes = c.MaxMessageSize
	srv.MaxLineLength = 0 // body lines of any length; commands are bounded by paramConn
	srv.EnableSMTPUTF8 = true
	srv.EnableDSN = true // accept RET and ENVID on MAIL FROM
	srv.ErrorLog = privateLogger{logger}
	s.smtp = srv
	return s
}

// Listen makes ln the filter's SMTP listener, which Serve answers on.
func (s *Server) Listen(ln net.Listener) {
	s.ln = newParamListener(ln, s.metrics)
}

// Reload takes the passthrough lists, the mailboxes folder and the rate
// limit from c for the transactions that start from now on. Ports, the
// mail domain and the size limit stay as they were at start.
func (s *Server) Reload(c *config.Config) {
	s.policy.Store(filter.NewPolicy(c))
	if s.limiter != nil {
		s.limiter.SetRate(c.MaxUserSendPerMinute, c.MaxUserSendBurstSize)
	}
}

// SetDebug turns on log lines that help to follow single transactions.
func (s *Server) SetDebug(on bool) { s.debug = on }

func (s *Server) debugf(format string, args ...any) {
	if s.debug {
		s.log.Printf(format, args...)
	}
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

func (b backend) NewSession(*smtp.Conn) (smtp.Session, error) {
	return &session{s: b.s}, nil
}
