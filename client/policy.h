/* The outbound access policy: may zhttpd connect to this host name / this address? API stable.
 *
 * Patterns (allow/deny, Zurl's forms, one grammar: zh_policy_check_pattern): an exact name or
 * address (case-insensitive), a pattern with one `*` (prefix*suffix, compared as strings, so `10.*`
 * and
 * `*.local` work), or a subnet with `/` (IPv4 short forms 10/8 and 172.16/12, dotted netmasks
 * 10.0.0.0/255.0.0.0, IPv6/len); a subnet only ever matches an address. See
 * docs/internals/policy.md for the full evaluation order. In short:
 *   - defpolicy set (Zurl's exact meaning): allow -> `!deny(s) || allow(s)`,
 *     deny -> `allow(s) && !deny(s)`, applied to the name and to each address's text form.
 *     deny_out_internal adds the internal deny set (below) on top.
 *   - defpolicy unset (zhttpd's default): names are checked as with defpolicy=allow; addresses
 *     too, but addresses in the internal set (loopback, RFC 1918, link-local, CGNAT, 0/8, cloud
 *     metadata, broadcast/multicast/reserved, IPv6 forms incl. IPv4-mapped, NAT64 and 6to4 with
 *     an embedded internal IPv4) are denied unless an allow pattern matches the address or the
 *     host name being connected to.
 *   - allow_ipv6=false denies every IPv6 address (Zurl skips non-IPv4 addresses).
 * Per-request ignore-policies is the caller's business: it simply does not call these.
 *
 * Host names handed to these functions must be the host curl will use: pass curl_url()'s
 * CURLUPART_HOST (curl rewrites 2130706433, 0x7f.1 and 127.1 to 127.0.0.1), or run the raw host
 * through zh_policy_normalize_host() first. Both checks accept "[v6]" with brackets. Immutable
 * after zh_policy_new(), so one policy may be shared by every worker thread. */
#ifndef ZH_CLIENT_POLICY_H
#define ZH_CLIENT_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "shared/proto/buf.h"

/* Same values as daemon/config.h's enum zh_config_policy, so the caller may cast. */
enum zh_policy_default {
    ZH_POLICY_DEFAULT_UNSET = 0, /* zhttpd's default: allow, minus the internal deny set */
    ZH_POLICY_DEFAULT_ALLOW = 1, /* Zurl defpolicy=allow */
    ZH_POLICY_DEFAULT_DENY = 2,  /* Zurl defpolicy=deny */
};

enum zh_policy_verdict {
    ZH_POLICY_ALLOW = 0,
    ZH_POLICY_DENY = 1,
};

/* The policy-relevant settings. The strings are copied by zh_policy_new(). */
struct zh_policy_config {
    enum zh_policy_default defpolicy;
    const char *const *allow; /* allow_count patterns */
    size_t allow_count;
    const char *const *deny; /* deny_count patterns */
    size_t deny_count;
    bool allow_ipv6;        /* false: every IPv6 address is denied (Zurl's default) */
    bool deny_out_internal; /* with defpolicy set: add the internal deny set on top */
};

struct zh_policy;

/* Build a policy. Empty patterns (and surrounding whitespace) are dropped as Zurl does. Returns
 * NULL with one line in err when a pattern is malformed. Free with zh_policy_free(). */
struct zh_policy *zh_policy_new(const struct zh_policy_config *cfg, struct zh_buf *err);

/* Check one allow/deny pattern against the grammar the policy enforces: the config loader uses
 * this, so what a config accepts is exactly what zh_policy_new() builds. The pattern is taken as
 * given (not trimmed). Returns 0, or -1 with what was expected in err (one line, without the
 * pattern). Forms: an exact host name or address; one `*` (prefix*suffix); a subnet with `/`:
 * IPv4 with 1 to 4 parts and an optional trailing dot (10/8, 172.16/12, 127.1/16, 10./8,
 * 10.0.0.0/8), a dotted contiguous netmask (10.0.0.0/255.0.0.0), or IPv6/len (fc00::/7). */
int zh_policy_check_pattern(const char *pattern, struct zh_buf *err);

/* Free a policy (NULL is fine). */
void zh_policy_free(struct zh_policy *p);

/* Check a host name (or IP literal) before resolving it: the uri host, and connect-host when the
 * request has one. An IP literal is also checked as an address (zh_policy_check_addr). *reason
 * (may be NULL) is set to a static or policy-owned string for the log ("deny rule '10.*'",
 * "internal address (loopback)", "allowed by rule 'x'", "default allow"). */
enum zh_policy_verdict zh_policy_check_name(const struct zh_policy *p, const char *host,
                                            const char **reason);

/* Check one resolved address that is about to be connected to (every address, every time: this
 * is the enforcement point). host is the name being connected to (connect-host if given, else
 * the uri host), or NULL; an allow pattern matching it opens the internal set for its addresses.
 * The port of sa is ignored. AF_INET and AF_INET6 only; any other family is denied. */
enum zh_policy_verdict zh_policy_check_addr(const struct zh_policy *p, const char *host,
                                            const struct sockaddr *sa, const char **reason);

/* True when sa is in the internal deny set; *what (may be NULL) names the range ("loopback",
 * "private", "link-local", "cgnat", "metadata", "this-network", "multicast", "reserved",
 * "ipv6-unique-local", ...). IPv4-mapped, NAT64 (64:ff9b::/96) and 6to4 (2002::/16) addresses
 * are judged by their embedded IPv4 address. */
bool zh_policy_is_internal(const struct sockaddr *sa, const char **what);

/* Rewrite a host as curl's URL parser would: IPv4 in the numeric forms inet_aton() accepts
 * (1 to 4 parts, each decimal, octal with a leading 0 or hex with 0x: "2130706433", "0x7f.1",
 * "127.1", "0177.0.0.1") becomes dotted decimal; "[v6]" loses its brackets and is printed in
 * canonical form; anything else is copied lower-cased. Returns the length written (< outlen),
 * or -ENOSPC when out is too small, or -EINVAL for an empty host or one with a NUL-free but
 * invalid bracket form. */
int zh_policy_normalize_host(const char *host, char *out, size_t outlen);

#endif
