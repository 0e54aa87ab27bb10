package metrics

import "slices"

// The values of the direction label: one filter process each.
const (
	Outgoing = "outgoing" // mail that local users send
	Incoming = "incoming" // mail that arrives for local users
)

// The values of the verdict label of filtermail_messages_total.
const (
	Pass     = "pass"
	Refuse   = "refuse"
	Tempfail = "tempfail"
	Dropped  = "dropped" // incoming, every recipient disabled: accepted, not delivered
)

// The reasons of filtermail_messages_total that are not rules of package
// filter: the SMTP server's size limit, and a marker file that could not
// be looked up.
const (
	ReasonTooLarge     = "too_large"
	ReasonLookupFailed = "lookup_failed"
	ReasonInvalidData  = "invalid_data" // a bare CR or LF, or no final CRLF
	ReasonDisabled     = "disabled"     // every recipient's account is disabled
	ReasonDKIMNone     = "dkim_none"
	ReasonDKIMFail     = "dkim_fail"
	ReasonDKIMTempFail = "dkim_tempfail"
)

// Outcome is a verdict with the reason that decided it: one series of
// filtermail_messages_total.
type Outcome struct {
	Verdict, Reason string
}

// Outcomes lists the outcomes a filter for direction can count: each
// verdict only with the reasons that can decide it in that direction. The
// reasons but ReasonTooLarge and ReasonLookupFailed are package filter's.
// Other directions have none.
func Outcomes(direction string) []Outcome {
	switch direction {
	case Outgoing:
		return []Outcome{
			{Pass, "encrypted"},
			{Pass, "securejoin"},
			{Pass, "passthrough_sender"},
			{Pass, "autocrypt_setup"},
			{Pass, "passthrough_recipients"},
			{Refuse, "unencrypted"},
			{Refuse, "forged_from"},
			{Refuse, "bad_sender"}, // at MAIL FROM
			{Refuse, ReasonTooLarge},
			{Refuse, ReasonInvalidData},
		}
	case Incoming:
		return []Outcome{
			{Pass, "encrypted"},
			{Pass, "securejoin"},
			{Pass, "mailer_daemon"},
			{Pass, "cleartext_allowed"},
			{Refuse, "unencrypted"},
			{Refuse, "invalid_from"},
			{Refuse, ReasonTooLarge},
			{Refuse, ReasonInvalidData},
			{Refuse, ReasonDKIMNone},
			{Refuse, ReasonDKIMFail},
			{Tempfail, ReasonDKIMTempFail},
			{Tempfail, ReasonLookupFailed},
			{Dropped, ReasonDisabled},
		}
	}
	return nil
}

// SEIPDVersions lists the values of the version label of
// filtermail_openpgp_seipd_total: the SEIPD packet versions an encrypted
// message can have.
func SEIPDVersions() []int { return []int{1, 2} }

// Reinject results, the values of the result label of
// filtermail_reinject_total.
const (
	ReinjectOK          = "ok"          // Postfix took the message
	ReinjectRefused4xx  = "refused_4xx" // Postfix answered 4xx
	ReinjectRefused5xx  = "refused_5xx" // Postfix answered 5xx
	ReinjectUnreachable = "unreachable" // no connection or no greeting
	ReinjectBroken      = "broken"      // the connection broke off
)

// ReinjectResults lists the values of the result label of
// filtermail_reinject_total.
func ReinjectResults() []string {
	return []string{ReinjectOK, ReinjectRefused4xx, ReinjectRefused5xx, ReinjectUnreachable, ReinjectBroken}
}

// DKIMResults lists the values of the result label of
// filtermail_dkim_verifications_total: package dkim's outcomes.
func DKIMResults() []string { return []string{"pass", "none", "fail", "tempfail", "skipped"} }

// Key lookup results, the values of the result label of
// filtermail_dkim_key_lookups_total.
const (
	KeyAuthenticated   = "authenticated"   // found, the answer had the DNSSEC AD bit
	KeyUnauthenticated = "unauthenticated" // found, without the AD bit
	KeyCached          = "cached"          // found in the key cache
	KeyNotFound        = "not_found"
	KeyTempFail        = "tempfail" // SERVFAIL, timeout: the message is tried again
	KeyError           = "error"
)

// KeyLookupResults lists the values of the result label of
// filtermail_dkim_key_lookups_total.
func KeyLookupResults() []string {
	return []string{KeyAuthenticated, KeyUnauthenticated, KeyCached, KeyNotFound, KeyTempFail, KeyError}
}

// MxdelivStatuses lists the HTTP statuses that POST /mxdeliv answers, the
// values of the status label of filtermail_mxdeliv_requests_total.
func MxdelivStatuses() []int { return []int{200, 400, 404, 405, 413, 500} }

// Reload results, the values of the result label of
// filtermail_reloads_total.
const (
	ReloadOK     = "ok"
	ReloadFailed = "failed"
)

// ReloadResults lists the values of the result label of
// filtermail_reloads_total.
func ReloadResults() []string { return []string{ReloadOK, ReloadFailed} }

// The command label of filtermail_smtp_commands_total: the verbs of
// countedVerbs, EndOfData, or OtherCommand.
const (
	// EndOfData is the command label for the reply to a message's
	// content, after DATA.
	EndOfData = "END-OF-DATA"
	// OtherCommand stands for every verb that is not counted by name.
	OtherCommand = "other"
)

// countedVerbs are the verbs counted by name: those of a mail transaction
// and of the session around it.
var countedVerbs = []string{"HELO", "EHLO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP", "QUIT"}

// CommandReply is a command with the class of its reply ("2xx" to
// "5xx"): one series of filtermail_smtp_commands_total.
type CommandReply struct {
	Command, Class string
}

// CommandReplies lists the commands and reply classes a filter for
// direction can count. Other directions have none.
func CommandReplies(direction string) []CommandReply {
	if direction != Outgoing && direction != Incoming {
		return nil
	}
	replies := []CommandReply{
		// 250, or 501 without a domain.
		{"HELO", "2xx"}, {"HELO", "5xx"},
		{"EHLO", "2xx"}, {"EHLO", "5xx"},
		// 250, or 5xx: syntax, SIZE over the limit, a nested MAIL, and
		// outgoing a sender that is not local@domain.
		{"MAIL", "2xx"}, {"MAIL", "5xx"},
		// 250, 452 past the recipient limit, 5xx: syntax, no MAIL.
		{"RCPT", "2xx"}, {"RCPT", "4xx"}, {"RCPT", "5xx"},
		// 354, or 5xx without recipients.
		{"DATA", "3xx"}, {"DATA", "5xx"},
		// A chunk gets 250; the last one, and the end of DATA, the
		// verdict: 250, 4xx (marker lookup, Postfix), 5xx.
		{"BDAT", "2xx"}, {"BDAT", "4xx"}, {"BDAT", "5xx"},
		{EndOfData, "2xx"}, {EndOfData, "4xx"}, {EndOfData, "5xx"},
		{"RSET", "2xx"}, {"NOOP", "2xx"}, {"QUIT", "2xx"},
		// VRFY gets 252; other verbs 5xx.
		{OtherCommand, "2xx"}, {OtherCommand, "5xx"},
	}
	if direction == Outgoing {
		// 450 for a sender over its rate.
		replies = append(replies, CommandReply{"MAIL", "4xx"})
	}
	return replies
}

// commandLabel is the command label of a verb.
func commandLabel(verb string) string {
	if verb == EndOfData || slices.Contains(countedVerbs, verb) {
		return verb
	}
	return OtherCommand
}
