package policypages

import (
	"strconv"
	"strings"

	"filtermail/config"
)

// pageDefaults are the relay's defaults for the [params] keys that only
// the pages show.
var pageDefaults = map[string]string{
	"max_mailbox_size":            "500M",
	"delete_mails_after":          "20",
	"delete_large_after":          "7",
	"delete_inactive_users_after": "90",
	"username_min_length":         "9",
	"username_max_length":         "9",
	"password_min_length":         "9",
	"privacy_postal":              "",
	"privacy_mail":                "",
	"privacy_pdo":                 "",
	"privacy_supervisor":          "",
	"is_development_instance":     "false",
}

// configVars is what templates see as config: every key of [params], typed
// as the relay types them (whole numbers as numbers, true and false as
// booleans, lists as lists), with the relay's defaults for missing keys.
// A key that is not there reads as undefined, which Jinja takes as false.
func configVars(cfg *config.Config) map[string]any {
	vars := map[string]any{}
	for key, value := range pageDefaults {
		vars[key] = typed(value)
	}
	for key, value := range cfg.Params {
		if value == "" && pageDefaults[key] != "" {
			continue
		}
		vars[key] = typed(value)
	}
	vars["mail_domain"] = cfg.MailDomain
	vars["max_message_size"] = cfg.MaxMessageSize
	vars["max_user_send_per_minute"] = cfg.MaxUserSendPerMinute
	vars["max_user_send_burst_size"] = cfg.MaxUserSendBurstSize
	vars["filtermail_http_port"] = cfg.HTTPPort
	vars["filtermail_http_port_incoming"] = cfg.HTTPPortIncoming
	vars["passthrough_senders"] = cfg.PassthroughSenders
	vars["passthrough_recipients"] = cfg.PassthroughRecipients
	vars["mailboxes_dir"] = cfg.MailboxesDir
	return vars
}

// typed reads an ini value the way the relay's config does for its known
// keys: a whole number is a number, true or false a boolean.
func typed(value string) any {
	if n, err := strconv.Atoi(value); err == nil {
		return n
	}
	switch strings.ToLower(value) {
	case "true":
		return true
	case "false":
		return false
	}
	return value
}

// templateVars are the variables every page template sees.
func templateVars(cfg *config.Config, pagename string) map[string]any {
	c := configVars(cfg)
	vars := map[string]any{
		"config":   c,
		"pagename": pagename,
	}
	// The relay spells these out in its pages: "at least nine characters".
	for _, key := range []string{"username_min_length", "username_max_length", "password_min_length"} {
		if n, ok := c[key].(int); ok {
			vars[key] = numberWord(n)
		} else {
			vars[key] = c[key]
		}
	}
	return vars
}

// numberWord spells small numbers in English words as the relay's pages
// do: "nine" for 9, digits from 13 to 50, "more" above.
func numberWord(n int) string {
	words := [...]string{"zero", "one", "two", "three", "four", "five", "six",
		"seven", "eight", "nine", "ten", "eleven", "twelve"}
	switch {
	case n >= 0 && n < len(words):
		return words[n]
	case n > 50:
		return "more"
	}
	return strconv.Itoa(n)
}
