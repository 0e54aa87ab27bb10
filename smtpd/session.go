package smtpd

import (
	"context"
	"errors"
	"io"
	"sync"

	"github.com/emersion/go-smtp"

	"filtermail/gate"
)

// session is one SMTP connection's transaction state. go-smtp runs Data
// on a goroutine of its own for BDAT, and may reset the session while it
// runs (RSET, QUIT, a broken connection): the mutex keeps the two apart,
// and a transaction whose message is on its way ends itself (see
// gate.Tx.Abort).
type session struct {
	s    *Server
	conn *paramConn

	mu      sync.Mutex
	tx      *gate.Tx      // the open transaction, once MAIL was accepted
	to      int           // recipients given
	running chan struct{} // closed when the Data that runs returns
}

var errNoTransaction = &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "Error: no transaction"}

var errNestedMail = &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "Error: nested MAIL command"}

// Mail starts a transaction. A MAIL inside an open transaction is refused,
// as Postfix refuses it, and the transaction goes on as it was: go-smtp
// keeps its sender and recipients whatever the session answers.
func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.tx != nil {
		return errNestedMail
	}
	tx, err := ss.s.gate.Mail(context.Background(), from, opts)
	if err != nil {
		return err
	}
	ss.tx = tx
	return nil
}

// Rcpt passes a recipient on, and Postfix's answer for it back; its
// parameters never reach here (see paramConn).
func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.to++
	return ss.tx.Rcpt(to)
}

// errBodyBroken is the reply when the body could not be read to its end:
// the client went quiet past the timeout, or the connection broke. It is
// temporary, and names no address.
var errBodyBroken = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "Timeout or error reading the message, try again later"}

// Data streams the message through the gate: a DATA body as paramConn
// reads it, BDAT chunks as go-smtp reads them.
func (ss *session) Data(r io.Reader) error {
	if body := ss.conn.Body(); body != nil {
		r = body
	}
	ss.mu.Lock()
	tx, to := ss.tx, ss.to
	running := make(chan struct{})
	ss.running = running
	ss.mu.Unlock()
	defer close(running)
	// Only now may the connection read on (see paramConn.awaitData): a
	// Reset from here on waits for this Data.
	ss.conn.dataBegins()
	if tx == nil {
		return errNoTransaction // reset before its message came
	}
	err := tx.Data(r)
	var rerr *gate.ReadError
	if !errors.As(err, &rerr) {
		return err
	}
	var reply *smtp.SMTPError
	switch {
	case errors.Is(rerr.Err, smtp.ErrDataTooLarge):
		ss.s.gate.TooLarge(ss.s.smtp.MaxMessageBytes, to)
		return smtp.ErrDataTooLarge
	case errors.Is(rerr.Err, smtp.ErrDataReset), errors.As(rerr.Err, &reply):
		return rerr.Err
	}
	return errBodyBroken
}

// Reset ends the transaction; Postfix keeps nothing of one that did not
// get to its end.
// A Data that runs (BDAT) has its body cut off by go-smtp before Reset,
// and ends its transaction itself; Reset waits for it, so that the next
// transaction starts after it.
func (ss *session) Reset() {
	ss.mu.Lock()
	tx, running := ss.tx, ss.running
	ss.tx, ss.to, ss.running = nil, 0, nil
	ss.mu.Unlock()
	if tx != nil {
		tx.Abort()
	}
	if running != nil {
		<-running
	}
	ss.conn.dataReset()
}

func (ss *session) Logout() error {
	ss.Reset()
	return nil
}
