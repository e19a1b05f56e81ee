/* Brute-force slowdown: failed logins are answered after a delay that
 * doubles with each recent failure from the same client address or for
 * the same login. Once a client address has several recent failures, its
 * successful logins wait as long as a failure would (so that a guesser
 * cannot hang up early and take silence for "wrong"). Shared by every
 * I/O thread; memory is bounded. */
#ifndef TPOPS_AUTH_PENALTY_H
#define TPOPS_AUTH_PENALTY_H
#include <time.h>

/* Records a failure; returns the seconds to wait before answering it:
 * base for the first, doubling per recent failure from the address or for
 * the login, at most max. */
int auth_penalty_failure(const char *address, const char *login, int base, int max);
/* The seconds a login attempt from address must wait before its
 * credentials are checked: once the address has AUTH_PENALTY_GRACE recent
 * failures (any login), what a failure would cost now; else 0. A few
 * typing mistakes hold nobody up; a guesser is held on every attempt,
 * right or wrong. The failures of a login from elsewhere do not count, or
 * an attacker could slow down its owner's logins. */
#define AUTH_PENALTY_GRACE 3
int auth_penalty_pending(const char *address, int base, int max);
/* A successful login forgets the failures of that login from that
 * address: they no longer count for the address nor for the login. The
 * failures others made (the same login from elsewhere, other logins from
 * this address) stay, so that succeeding with one's own account does not
 * wipe the record of a guesser. */
void auth_penalty_success(const char *address, const char *login);

#endif
