package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// relayIni is shaped like a real relay's chatmail.ini: comments, keys
// filtermail does not use, empty values, trailing spaces, other sections.
const relayIni = `[params]

# mail domain (MUST be set to fully qualified chat mail domain)
mail_domain = chat.example.org

; how many mails a user can send out per minute
max_user_send_per_minute = 30
MAX_MAILBOX_SIZE = 500M
max_message_size = 1048576
delete_mails_after = 20
passthrough_senders =
passthrough_recipients = echo@chat.example.org   @notify.example.com 
disable_ipv6 = False
mtail_address: 127.0.0.1
privacy_postal =
    Example Relay e.V.
    Somewhere 1
imap_rawlog = false

[other]
mail_domain = ignored.example.org
filtermail_smtp_port = nonsense
`

func writeIni(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "chatmail.ini")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadRelayIni(t *testing.T) {
	c, err := Load(writeIni(t, relayIni))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		MailDomain:            "chat.example.org",
		FiltermailHost:        "127.0.0.1",
		PostfixHost:           "127.0.0.1",
		SMTPPort:              10080,
		SMTPPortIncoming:      10081,
		HTTPPortIncoming:      10082,
		LMTPPortTransport:     10083,
		HTTPPort:              10084,
		MetricsPortIncoming:   10085,
		MetricsPortTransport:  10086,
		ReinjectPort:          10025,
		ReinjectPortIncoming:  10026,
		MaxMessageSize:        1048576,
		MaxUserSendPerMinute:  30,
		MaxUserSendBurstSize:  10,
		PassthroughSenders:    []string{},
		PassthroughRecipients: []string{"echo@chat.example.org", "@notify.example.com"},
		MailboxesDir:          "/home/vmail/mail/chat.example.org",
		Languages:             []string{"EN"},
		Params:                c.Params,
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
	for key, v := range map[string]string{
		"max_mailbox_size": "500M",
		"mtail_address":    "127.0.0.1",
		"privacy_postal":   "Example Relay e.V.\nSomewhere 1",
		"privacy_mail":     "",
	} {
		if c.Params[key] != v {
			t.Errorf("Params[%q] = %q, want %q", key, c.Params[key], v)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name, ini, want string
	}{
		{"no mail_domain", "[params]\nmax_message_size = 10\n", "mail_domain is required"},
		{"empty mail_domain", "[params]\nmail_domain =\n", "mail_domain is required"},
		{"no params section", "[other]\nmail_domain = x\n", "mail_domain is required"},
		{"not a number", "[params]\nmail_domain = x\nmax_message_size = 30M\n", `max_message_size: "30M" is not a number`},
		{"bad port", "[params]\nmail_domain = x\npostfix_reinject_port = 70000\n", "postfix_reinject_port: 70000 is not a port"},
		{"zero rate", "[params]\nmail_domain = x\nmax_user_send_per_minute = 0\n", "max_user_send_per_minute: 0 is below"},
		{"negative http port", "[params]\nmail_domain = x\nfiltermail_http_port = -1\n", "filtermail_http_port: -1 is below"},
		{"key outside a section", "mail_domain = x\n", "line 1: key outside"},
		{"garbage line", "[params]\nmail_domain = x\njust words\n", "line 3"},
		{"unknown language", "[params]\nmail_domain = x\nlanguages = EN XX\n", `languages: unknown language code "XX"`},
		{"ALL with others", "[params]\nmail_domain = x\nlanguages = EN ALL\n", "languages: ALL stands alone"},
		{"host with a port", "[params]\nmail_domain = x\nfiltermail_host = 127.0.0.1:25\n", `filtermail_host: "127.0.0.1:25" is not a host`},
		{"host with a space", "[params]\nmail_domain = x\npostfix_host = mail host\n", `postfix_host: "mail host" is not a host`},
		{"resolver without port", "[params]\nmail_domain = x\nfiltermail_dns_resolver = 127.0.0.1\n", `filtermail_dns_resolver: "127.0.0.1" is not an IP address and port`},
		{"resolver bad port", "[params]\nmail_domain = x\nfiltermail_dns_resolver = 127.0.0.1:dns\n", `filtermail_dns_resolver: "127.0.0.1:dns" is not an IP address and port`},
		{"resolver port 0", "[params]\nmail_domain = x\nfiltermail_dns_resolver = 127.0.0.1:0\n", `filtermail_dns_resolver: "127.0.0.1:0" is not an IP address and port`},
		{"resolver by name", "[params]\nmail_domain = x\nfiltermail_dns_resolver = resolver.example:53\n", `filtermail_dns_resolver: "resolver.example:53" is not an IP address and port`},
		{"metrics port too big", "[params]\nmail_domain = x\nfiltermail_metrics_port_incoming = 65536\n", "filtermail_metrics_port_incoming: 65536 is not a port"},
		{"language twice", "[params]\nmail_domain = x\nlanguages = EN de DE\n", "languages: DE is listed twice"},
	}
	for _, tt := range tests {
		path := writeIni(t, tt.ini)
		_, err := Load(path)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: error %v, want one naming the file and saying %q", tt.name, err, tt.want)
		}
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.ini")); err == nil || !strings.Contains(err.Error(), "missing.ini") {
		t.Errorf("missing file: error %v", err)
	}
}

func TestDNSResolver(t *testing.T) {
	for _, v := range []string{"127.0.0.53:53", "[::1]:5353", "192.0.2.1:5300"} {
		c, err := Load(writeIni(t, "[params]\nmail_domain = x\nfiltermail_dns_resolver = "+v+"\n"))
		if err != nil {
			t.Errorf("%q: %v", v, err)
		} else if c.DNSResolver != v {
			t.Errorf("%q: DNSResolver %q", v, c.DNSResolver)
		}
	}
}

func TestHosts(t *testing.T) {
	for _, tt := range []struct{ value, want string }{
		{"", "127.0.0.1"},
		{"127.0.3.7", "127.0.3.7"},
		{"::1", "::1"},
		{"localhost", "localhost"},
		{"mx-1.relay.example", "mx-1.relay.example"},
	} {
		c, err := Load(writeIni(t, "[params]\nmail_domain = x\nfiltermail_host = "+tt.value+"\npostfix_host = "+tt.value+"\n"))
		if err != nil {
			t.Errorf("%q: %v", tt.value, err)
			continue
		}
		if c.FiltermailHost != tt.want || c.PostfixHost != tt.want {
			t.Errorf("%q: filtermail_host %q, postfix_host %q, want %q", tt.value, c.FiltermailHost, c.PostfixHost, tt.want)
		}
	}
}

func TestHTTPPortOff(t *testing.T) {
	c, err := Load(writeIni(t, "[params]\nmail_domain = x\nfiltermail_http_port = 0\nlanguages = en ru\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTPPort != 0 || !reflect.DeepEqual(c.Languages, []string{"EN", "RU"}) {
		t.Errorf("HTTPPort %d, Languages %v", c.HTTPPort, c.Languages)
	}
}

func TestLanguages(t *testing.T) {
	tests := []struct {
		value string
		want  []string
		all   bool
	}{
		{"", []string{"EN"}, false},
		{"de", []string{"DE"}, false},
		{"RU  en\tDE", []string{"RU", "EN", "DE"}, false},
		{"ALL", nil, true},
		{"all", nil, true},
	}
	for _, tt := range tests {
		c, err := Load(writeIni(t, "[params]\nmail_domain = x\nlanguages = "+tt.value+"\n"))
		if err != nil {
			t.Errorf("languages = %s: %v", tt.value, err)
			continue
		}
		if !reflect.DeepEqual(c.Languages, tt.want) || c.AllLanguages != tt.all {
			t.Errorf("languages = %s: got %v all=%v, want %v all=%v", tt.value, c.Languages, c.AllLanguages, tt.want, tt.all)
		}
	}
	if l, ok := LookupLanguage("ru"); !ok || l.Name != "Русский" || l.Tag() != "ru" || l.RTL {
		t.Errorf("LookupLanguage(ru) = %+v, %v", l, ok)
	}
	if l, ok := LookupLanguage("FA"); !ok || !l.RTL {
		t.Errorf("LookupLanguage(FA) = %+v, %v", l, ok)
	}
}

func FuzzParseSection(f *testing.F) {
	f.Add(relayIni)
	f.Fuzz(func(t *testing.T, text string) {
		params, err := parseSection(strings.NewReader(text), "params")
		if err == nil {
			fromParams(params)
		}
	})
}

func TestExampleConfig(t *testing.T) {
	c, err := Load("../example/chatmail.ini")
	if err != nil {
		t.Fatal(err)
	}
	if c.MailDomain != "chat.example.org" {
		t.Errorf("mail_domain %q", c.MailDomain)
	}
}
