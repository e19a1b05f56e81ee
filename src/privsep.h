/* Dropping root: after binding, switch to the configured user and group. */
#ifndef TPOPS_PRIVSEP_H
#define TPOPS_PRIVSEP_H
#include <stddef.h>

/* When running as root: setgroups, setresgid, setresuid to User/Group, and
 * verify root cannot be regained. Refuses User "root". Not root: nothing
 * to do. -1 with a message in err on failure. */
int privsep_drop(const char *user, const char *group, char *err, size_t errlen);

#endif
