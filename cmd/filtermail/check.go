package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/mail"
	"os"
	"strings"

	"filtermail/config"
	"filtermail/filter"
	"filtermail/metrics"
)

const checkUsage = "usage: filtermail check CONFIG FILE.eml [--incoming] [--from ADDR] [--to ADDR]..."

// check prints the verdict on one message as the filter would give it,
// and the rule that decided. The envelope is the one given with --from and
// --to, or else taken from the From, To, Cc and Bcc headers. It returns
// refused when the filter would not pass the message.
func check(args []string, stdout io.Writer) error {
	flags := flag.NewFlagSet("check", flag.ContinueOnError)
	flags.SetOutput(io.Discard)
	incoming := flags.Bool("incoming", false, "judge as incoming mail")
	var from *string
	flags.Func("from", "the envelope sender", func(s string) error { from = &s; return nil })
	var to []string
	flags.Func("to", "an envelope recipient", func(s string) error { to = append(to, s); return nil })
	// Flags may come before, between and after the two arguments.
	var rest []string
	for {
		if err := flags.Parse(args); err != nil {
			return usageError{fmt.Errorf("%v; %s", err, checkUsage)}
		}
		if flags.NArg() == 0 {
			break
		}
		rest = append(rest, flags.Arg(0))
		args = flags.Args()[1:]
	}
	if len(rest) != 2 {
		return usageError{errors.New(checkUsage)}
	}
	cfg, err := config.Load(rest[0])
	if err != nil {
		return usageError{err}
	}
	data, err := os.ReadFile(rest[1])
	if err != nil {
		return usageError{err}
	}

	m := filter.ReadMessage(bytes.NewReader(data))
	env := filter.Envelope{From: m.From, To: to}
	var derived []string
	if from != nil {
		env.From = *from
	} else {
		derived = append(derived, "sender from the From header")
	}
	if to == nil {
		env.To = headerRecipients(data)
		derived = append(derived, "recipients from To, Cc and Bcc")
	}
	policy := filter.NewPolicy(cfg)
	var v filter.Verdict
	allDisabled := false
	if *incoming {
		var active []string
		active, err = policy.ActiveRecipients(env.To)
		if err == nil && len(env.To) > 0 && len(active) == 0 {
			allDisabled = true
		} else if err == nil {
			env.To = active
			v, err = policy.Incoming(env, m)
		}
	} else {
		v = policy.Outgoing(env, m)
	}

	var lines []string
	line := func(format string, args ...any) { lines = append(lines, fmt.Sprintf(format, args...)) }
	size := wireSize(data)
	switch {
	case err != nil:
		line("verdict: %s", metrics.Tempfail)
		line("reason: %s", metrics.ReasonLookupFailed)
		line("rule: a marker file of a recipient (enforceE2EEincoming, DISABLED) could not be looked up; the daemon answers 451 and the sender tries again")
		line("error: %v", err)
	case allDisabled:
		line("verdict: %s", metrics.Dropped)
		line("reason: %s", metrics.ReasonDisabled)
		line("rule: every recipient's account has the DISABLED marker; the daemon accepts the message and delivers it to no one")
	case v.Reason != filter.BadSender && size > cfg.MaxMessageSize:
		// The daemon refuses a sender at MAIL FROM, and a message over
		// the size limit before its content is judged.
		line("verdict: %s", metrics.Refuse)
		line("reason: %s", metrics.ReasonTooLarge)
		line("rule: a message larger than max_message_size (%d bytes) is refused at the end of DATA", cfg.MaxMessageSize)
		line("size: %d bytes", size)
	default:
		verdict := metrics.Refuse
		if v.Pass {
			verdict = metrics.Pass
		}
		line("verdict: %s", verdict)
		line("reason: %s", v.Reason)
		line("rule: %s", v.Rule)
		if v.Reason == filter.ForgedFrom {
			line("from header: <%s>", m.From)
		}
		if v.NotEncrypted != nil {
			line("not encrypted: %v", v.NotEncrypted)
		}
		if m.Encrypted {
			line("openpgp: SEIPD v%d, %d key packets", m.Packets.SEIPDVersion, m.Packets.ESKs)
		}
		if v.Recipient != "" {
			line("recipient: <%s>", v.Recipient)
		}
	}
	envelope := fmt.Sprintf("envelope: from <%s> to <%s>", env.From, strings.Join(env.To, ">, <"))
	if len(derived) > 0 {
		envelope += " (" + strings.Join(derived, ", ") + ")"
	}
	lines = append(lines, envelope)
	fmt.Fprintln(stdout, strings.Join(lines, "\n"))

	if allDisabled {
		return nil
	}
	if err != nil || !v.Pass || size > cfg.MaxMessageSize {
		return refused
	}
	return nil
}

// wireSize is the size of a message as SMTP carries it to the daemon:
// every line ending a CRLF.
func wireSize(data []byte) int64 {
	bareLF := bytes.Count(data, []byte("\n")) - bytes.Count(data, []byte("\r\n"))
	return int64(len(data) + bareLF)
}

// headerRecipients lists the addresses in the To, Cc and Bcc headers.
func headerRecipients(data []byte) []string {
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		return nil
	}
	var to []string
	for _, key := range []string{"To", "Cc", "Bcc"} {
		list, _ := msg.Header.AddressList(key)
		for _, a := range list {
			to = append(to, a.Address)
		}
	}
	return to
}
