package main

import (
	"strings"

	"filtermail/config"
	"filtermail/filter"
	"filtermail/policypages"
)

// reload reads the config file again and renders the pages from it. Only
// when both work do the filter and the pages take them; otherwise the log
// says why and everything stays as it was.
func (d *service) reload() {
	next, err := config.Load(d.cfgPath)
	var site *policypages.Site
	if err == nil && d.pages != nil {
		site, err = renderPages(next)
	}
	if err != nil {
		d.metrics.Reloaded(false)
		d.log.Printf("Reload failed, keeping the running config and pages: %v", err)
		return
	}
	if keys := restartOnly(d.cfg, next); len(keys) > 0 {
		d.log.Printf("Reload: %s changed; that takes a restart.", strings.Join(keys, ", "))
	}
	d.gate.Reload(filter.NewPolicy(next), next.MaxUserSendPerMinute, next.MaxUserSendBurstSize)
	if site != nil {
		logWarnings(site, d.log)
		d.pages.Swap(site)
	}
	d.metrics.Reloaded(true)
	d.log.Printf("Reloaded %s.", d.cfgPath)
}

// restartOnly lists the keys whose new values a reload cannot apply: the
// listeners, which are bound, where reinjection goes, and the size limit,
// which the SMTP server announces.
func restartOnly(running, next *config.Config) []string {
	var keys []string
	for _, k := range []struct {
		key      string
		old, new any
	}{
		{"filtermail_host", running.FiltermailHost, next.FiltermailHost},
		{"postfix_host", running.PostfixHost, next.PostfixHost},
		{"filtermail_smtp_port", running.SMTPPort, next.SMTPPort},
		{"filtermail_smtp_port_incoming", running.SMTPPortIncoming, next.SMTPPortIncoming},
		{"postfix_reinject_port", running.ReinjectPort, next.ReinjectPort},
		{"postfix_reinject_port_incoming", running.ReinjectPortIncoming, next.ReinjectPortIncoming},
		{"filtermail_http_port", running.HTTPPort, next.HTTPPort},
		{"filtermail_http_port_incoming", running.HTTPPortIncoming, next.HTTPPortIncoming},
		{"filtermail_metrics_port_incoming", running.MetricsPortIncoming, next.MetricsPortIncoming},
		{"filtermail_dns_resolver", running.DNSResolver, next.DNSResolver},
		{"max_message_size", running.MaxMessageSize, next.MaxMessageSize},
	} {
		if k.old != k.new {
			keys = append(keys, k.key)
		}
	}
	return keys
}
