// Package smtpd is the SMTP side of filtermail: a go-smtp server that
// Postfix hands mail to, which judges each message with package filter
// and reinjects what passes into Postfix.
package smtpd

import (
	"context"
	"fmt"
	"log"
	"net"
	"strconv"
	"time"

	"github.com/emersion/go-smtp"

	"filtermail/config"
	"filtermail/filter"
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
	policy   *filter.Policy
	limiter  *rateLimiter // outgoing only
	reinject reinjector
	log      *log.Logger
	smtp     *smtp.Server
}

// New returns the filter for one direction, configured by c, logging to
// logger.
func New(c *config.Config, dir Direction, logger *log.Logger) *Server {
	s := &Server{
		dir:    dir,
		policy: filter.NewPolicy(c),
		log:    logger,
	}
	port := c.ReinjectPort
	if dir == Incoming {
		port = c.ReinjectPortIncoming
	} else {
		s.limiter = newRateLimiter(c.MaxUserSendPerMinute, c.MaxUserSendBurstSize)
	}
	s.reinject.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))

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

// Listen binds the filter's SMTP port on the loopback interface.
func Listen(port int) (net.Listener, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("listening for SMTP: %w", err)
	}
	return ln, nil
}

// Serve answers SMTP connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	err := s.smtp.Serve(paramListener{ln})
	if err == smtp.ErrServerClosed {
		return nil
	}
	return err
}

// Shutdown stops accepting connections and waits, until ctx is done, for
// open ones to end; then it closes them.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.smtp.Shutdown(ctx)
	if err != nil {
		s.smtp.Close()
	}
	return err
}

type backend struct{ s *Server }

func (b backend) NewSession(*smtp.Conn) (smtp.Session, error) {
	return &session{s: b.s}, nil
}
