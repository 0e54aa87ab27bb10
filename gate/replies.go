package gate

import (
	"fmt"

	"github.com/emersion/go-smtp"
)

// The replies of the gate, in one place. The relay's own replies keep
// their text exactly and carry no enhanced status code; filtermail's own
// temporary ones do.

// reply is an SMTP reply whose text is exactly as given, without an added
// enhanced status code: the relay's replies, kept as they are.
func reply(code int, format string, args ...any) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: smtp.NoEnhancedCode, Message: fmt.Sprintf(format, args...)}
}

func errInvalidSender(from string) *smtp.SMTPError {
	return reply(500, "Invalid from address <%s>", from)
}

func errRateLimited(from string) *smtp.SMTPError {
	return reply(450, "4.7.1: Too much mail from <%s>", from)
}

func errForgedFrom(header, envelope string) *smtp.SMTPError {
	return reply(500, "Invalid FROM <%s> for <%s>", header, envelope)
}

var (
	errInvalidData      = reply(500, "Invalid DATA")
	errInvalidFrom      = reply(500, "Invalid FROM header")
	errEncryptionNeeded = reply(523, "Encryption Needed: Invalid Unencrypted Mail")
	errNoDKIM           = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "No DKIM signature found"}
	errBadDKIM          = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "No valid DKIM signature found"}
	errDKIMTempFail     = &smtp.SMTPError{
		Code:         451,
		EnhancedCode: smtp.EnhancedCode{4, 7, 5},
		Message:      "DKIM key lookup failed, try again later",
	}
	errInternal = &smtp.SMTPError{
		Code:         451,
		EnhancedCode: smtp.EnhancedCode{4, 3, 0},
		Message:      "Internal error, try again later",
	}
	errLookupFailed = &smtp.SMTPError{
		Code:         451,
		EnhancedCode: smtp.EnhancedCode{4, 3, 0},
		Message:      "Cannot look up recipient settings, try again later",
	}
)
