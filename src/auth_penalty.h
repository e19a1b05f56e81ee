/* Brute-force slowdown: failed logins are answered after a delay that
 * doubles with each recent failure from the same client address or for
 * the same login. Shared by every I/O thread; memory is bounded. */
#ifndef TPOPS_AUTH_PENALTY_H
#define TPOPS_AUTH_PENALTY_H
#include <time.h>

/* Records a failure; returns the seconds to wait before answering it:
 * base for the first, doubling per recent failure, at most max. */
int auth_penalty_failure(const char *address, const char *login, int base, int max);
/* A successful login forgets the failures of that login from that address. */
void auth_penalty_success(const char *address, const char *login);

#endif
