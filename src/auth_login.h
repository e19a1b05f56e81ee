/* The one rule by which a login (and a mail address) names a user, for
 * both databases: the same octets, except that ASCII letters match in
 * either case. No other folding: "Älice" is not "älice" nor "alice", and
 * "alice " (a trailing space) is not "alice". The original TPOPS compared
 * case-insensitively through MySQL's latin1 collation; ASCII case is what
 * its users relied on, and an exact rule for the rest keeps SQLite and
 * MariaDB (whose collations fold accents and ignore trailing spaces) in
 * agreement. docs/SECURITY.md, "Logins". */
#ifndef TPOPS_AUTH_LOGIN_H
#define TPOPS_AUTH_LOGIN_H
#include <stdbool.h>
#include <stddef.h>

/* The canonical form: ASCII letters lowered, everything else as is.
 * malloc'd. Every per-login record (failure counters) is keyed by it. */
char *auth_login_canonical(const char *login, size_t len);

/* True when a and b name the same user by the rule above. */
bool auth_login_same(const char *a, const char *b);

#endif
