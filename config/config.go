// Package config reads the [params] section of a chatmail relay's
// chatmail.ini into one typed struct.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// Config is what filtermail uses of chatmail.ini.
type Config struct {
	MailDomain string

	FiltermailHost string // filtermail_host: where every listener binds
	PostfixHost    string // postfix_host: where reinjection goes

	SMTPPort             int // filtermail_smtp_port: outgoing filter
	SMTPPortIncoming     int // filtermail_smtp_port_incoming: incoming filter
	LMTPPortTransport    int // filtermail_lmtp_port_transport: the transport
	ReinjectPort         int // postfix_reinject_port: outgoing reinjection
	ReinjectPortIncoming int // postfix_reinject_port_incoming: incoming reinjection
	HTTPPort             int // filtermail_http_port: outgoing pages and metrics; 0 turns it off
	HTTPPortIncoming     int // filtermail_http_port_incoming: POST /mxdeliv; 0 turns it off
	MetricsPortIncoming  int // filtermail_metrics_port_incoming; 0 turns it off
	MetricsPortTransport int // filtermail_metrics_port_transport; 0 turns it off

	// DNSResolver is the host:port of the DNS server for every lookup
	// (filtermail_dns_resolver); empty means the system's resolver.
	DNSResolver string

	MaxMessageSize       int64
	MaxUserSendPerMinute int
	MaxUserSendBurstSize int

	PassthroughSenders    []string
	PassthroughRecipients []string

	// MailboxesDir holds one directory per address; a file
	// enforceE2EEincoming in it marks a user who refuses cleartext.
	MailboxesDir string

	// Languages are the codes of the page languages, in the order the
	// pages show them; AllLanguages means every language the page sources
	// have, and Languages is then empty.
	Languages    []string
	AllLanguages bool
	// WWWFolder holds the operator's own page sources; empty means the
	// bundled pages.
	WWWFolder string

	// Params holds every key of [params] as written in the file, including
	// the ones filtermail does not interpret, for the policy pages.
	Params map[string]string
}

// Load reads and checks the config file at path. Its errors name the file
// and, where one is at fault, the key.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	params, err := parseSection(f, "params")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c, err := fromParams(params)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

func fromParams(p map[string]string) (*Config, error) {
	c := &Config{
		MailDomain:            p["mail_domain"],
		PassthroughSenders:    strings.Fields(p["passthrough_senders"]),
		PassthroughRecipients: strings.Fields(p["passthrough_recipients"]),
		MailboxesDir:          p["mailboxes_dir"],
		WWWFolder:             p["www_folder"],
		Params:                p,
	}
	if c.MailDomain == "" {
		return nil, errors.New("mail_domain is required in [params]")
	}
	if c.MailboxesDir == "" {
		c.MailboxesDir = "/home/vmail/mail/" + c.MailDomain
	}
	var err error
	if c.FiltermailHost, err = hostParam(p, "filtermail_host"); err != nil {
		return nil, err
	}
	if c.PostfixHost, err = hostParam(p, "postfix_host"); err != nil {
		return nil, err
	}
	if c.DNSResolver, err = resolverParam(p, "filtermail_dns_resolver"); err != nil {
		return nil, err
	}
	c.Languages, c.AllLanguages, err = parseLanguages(p["languages"])
	if err != nil {
		return nil, err
	}

	ints := []struct {
		key      string
		dst      *int
		def, min int
	}{
		{"filtermail_smtp_port", &c.SMTPPort, 10080, 1},
		{"filtermail_smtp_port_incoming", &c.SMTPPortIncoming, 10081, 1},
		{"filtermail_http_port_incoming", &c.HTTPPortIncoming, 10082, 0},
		{"filtermail_lmtp_port_transport", &c.LMTPPortTransport, 10083, 1},
		{"filtermail_http_port", &c.HTTPPort, 10084, 0},
		{"filtermail_metrics_port_incoming", &c.MetricsPortIncoming, 10085, 0},
		{"filtermail_metrics_port_transport", &c.MetricsPortTransport, 10086, 0},
		{"postfix_reinject_port", &c.ReinjectPort, 10025, 1},
		{"postfix_reinject_port_incoming", &c.ReinjectPortIncoming, 10026, 1},
		{"max_user_send_per_minute", &c.MaxUserSendPerMinute, 60, 1},
		{"max_user_send_burst_size", &c.MaxUserSendBurstSize, 10, 1},
	}
	for _, k := range ints {
		v, err := intParam(p, k.key, int64(k.def), int64(k.min))
		if err != nil {
			return nil, err
		}
		*k.dst = int(v)
	}
	for _, k := range ints[:9] {
		if *k.dst > 65535 {
			return nil, fmt.Errorf("%s: %d is not a port number", k.key, *k.dst)
		}
	}
	size, err := intParam(p, "max_message_size", 31457280, 1)
	if err != nil {
		return nil, err
	}
	c.MaxMessageSize = size
	return c, nil
}

// hostParam returns the host name or IP address under key, 127.0.0.1 when
// the key is missing or empty, and an error naming the key when the value
// is neither.
func hostParam(p map[string]string, key string) (string, error) {
	s := p[key]
	if s == "" {
		return "127.0.0.1", nil
	}
	if net.ParseIP(s) != nil {
		return s, nil
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || strings.Trim(label, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") != "" {
			return "", fmt.Errorf("%s: %q is not a host name or IP address", key, s)
		}
	}
	return s, nil
}

// resolverParam returns the IP address and port under key, or "" when
// the key is missing or empty, and an error naming the key otherwise: a
// DNS resolver cannot be found by name.
func resolverParam(p map[string]string, key string) (string, error) {
	s := p[key]
	if s == "" {
		return "", nil
	}
	addr, err := netip.ParseAddrPort(s)
	if err != nil || addr.Port() == 0 {
		return "", fmt.Errorf("%s: %q is not an IP address and port (such as 127.0.0.1:53)", key, s)
	}
	return s, nil
}

// intParam returns the integer under key, def when the key is missing or
// empty, and an error naming the key when the value is not an integer of at
// least min.
func intParam(p map[string]string, key string, def, min int64) (int64, error) {
	s := p[key]
	if s == "" {
		return def, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not a number", key, s)
	}
	if v < min {
		return 0, fmt.Errorf("%s: %d is below the minimum of %d", key, v, min)
	}
	return v, nil
}
