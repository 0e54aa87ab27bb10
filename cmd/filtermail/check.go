package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"os"

	"filtermail/config"
	"filtermail/filter"
)

// check prints the verdict on one message, as the filter would give it:
// the envelope is taken from the From, To, Cc and Bcc headers. It returns
// refused when the filter would refuse the message.
func check(args []string, stdout io.Writer) error {
	incoming := false
	var rest []string
	for _, a := range args {
		if a == "--incoming" || a == "-incoming" {
			incoming = true
		} else {
			rest = append(rest, a)
		}
	}
	if len(rest) != 2 {
		return usageError{errors.New(usage)}
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
	env := filter.Envelope{From: m.From, To: headerRecipients(data)}
	policy := filter.NewPolicy(cfg)
	var v filter.Verdict
	if incoming {
		if v, err = policy.Incoming(env, m); err != nil {
			return err
		}
	} else {
		v = policy.Outgoing(env, m)
	}

	verdict := "refuse"
	if v.Pass {
		verdict = "pass"
	}
	fmt.Fprintf(stdout, "verdict: %s\nreason: %s\n", verdict, v.Reason)
	switch {
	case m.Encrypted:
		fmt.Fprintf(stdout, "openpgp: SEIPD v%d, %d key packets\n", m.Packets.SEIPDVersion, m.Packets.ESKs)
	case m.NotEncrypted != nil:
		fmt.Fprintf(stdout, "not encrypted: %v\n", m.NotEncrypted)
	}
	if !v.Pass {
		return refused
	}
	return nil
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
