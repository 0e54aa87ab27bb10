// Package tlspolicy says how an SMTP connection to a mail exchanger of
// another domain must be secured, beyond the transport's own rule (STARTTLS
// required, the certificate verified against the MX name with the system
// roots): DANE (RFC 7672) where the MX host's zone is signed with DNSSEC,
// else MTA-STS (RFC 8461) where the domain publishes a policy.
//
// Every lookup goes through the caller's Resolver and every policy fetch
// through the caller's http.Client, so that all of them reach the DNS
// server the daemon is configured with (filtermail_dns_resolver).
//
// # Combining them
//
// For each MX host of a destination domain, before connecting, the
// transport asks [Checker.Require], which does this:
//
//  1. DANE, when the MX answer was DNSSEC-authenticated (and, for the
//     caller to ensure, the host's address answer too: RFC 7672 section
//     2.2.2). [Checker.DANE] looks up the TLSA records of _25._tcp.<host>.
//     A lookup that fails (SERVFAIL, a timeout) makes the host unusable
//     for now (RFC 7672 section 2.2): Require returns the error, the
//     transport tries the next MX host or defers the delivery, and never
//     connects to that host without DANE. Usable records: the connection
//     must use STARTTLS and the certificate must pass [DANE.Verify] in
//     place of WebPKI verification ([Requirement.TLSConfig] makes that
//     tls.Config). DANE takes precedence over MTA-STS (RFC 8461 section 2).
//     Records that exist but none usable (PKIX usages only) leave the
//     transport's rule in place, STARTTLS required.
//  2. MTA-STS otherwise. [Checker.STS] gives the domain's policy. In
//     enforce mode a host the policy does not list is not to be used:
//     Require returns an error wrapping [ErrNotInPolicy], and the transport
//     tries the next MX host (RFC 8461 section 5.1), deferring the delivery
//     when none is left. A listed host needs STARTTLS and WebPKI
//     verification against its name, which is the transport's rule anyway.
//     In testing mode nothing changes. When no policy can be had, the
//     domain is treated as having none (RFC 8461 section 3.3).
//  3. Else the caller's default.
//
// [Requirement.Source] names which of them applied, for a metrics label:
// "dane", "mta-sts" or "none"; never a domain.
//
// A requirement found here outranks the transport's exceptions to its
// rule (hosts it takes mail from without TLS or without verification);
// for IP literals there is nothing to ask.
package tlspolicy
