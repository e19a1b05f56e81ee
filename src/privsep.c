/* Dropping root: after binding, switch to the configured user and group. */
#include "privsep.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int privsep_drop(const char *user, const char *group, char *err, size_t errlen)
{
	if (geteuid() != 0)
		return 0;
	struct passwd *pw = getpwnam(user);
	if (pw == NULL) {
		snprintf(err, errlen,
			 "User: system user \"%s\" does not exist (create it, e.g. adduser "
			 "--system --group %s, or set User/Group in tpops.conf)",
			 user, user);
		return -1;
	}
	if (pw->pw_uid == 0) {
		snprintf(err, errlen, "User: \"%s\" is root; tpops never serves as root", user);
		return -1;
	}
	gid_t gid = pw->pw_gid;
	if (group != NULL && group[0] != '\0') {
		struct group *gr = getgrnam(group);
		if (gr == NULL) {
			snprintf(err, errlen, "Group: system group \"%s\" does not exist", group);
			return -1;
		}
		gid = gr->gr_gid;
	}
	uid_t uid = pw->pw_uid;
	if (setgroups(1, &gid) != 0 || setresgid(gid, gid, gid) != 0 ||
	    setresuid(uid, uid, uid) != 0) {
		snprintf(err, errlen, "switching to user %s: %s", user, strerror(errno));
		return -1;
	}
	if (setuid(0) == 0 || geteuid() == 0) {
		snprintf(err, errlen, "switching to user %s: root privileges could be regained",
			 user);
		return -1;
	}
	return 0;
}
