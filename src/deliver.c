/* One delivery, shared by tpops-store and the LMTP listener (see deliver.h). */
#include "deliver.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "maildrop.h"

const char *deliver_result_name(enum deliver_result r)
{
	switch (r) {
	case DELIVER_STORED:
		return "stored";
	case DELIVER_UNKNOWN:
		return "unknown address";
	case DELIVER_OVER_QUOTA:
		return "over quota";
	case DELIVER_TEMPORARY:
		return "temporary failure";
	case DELIVER_PERMANENT:
		return "permanent failure";
	}
	return "?";
}

/* A database or maildrop status as a delivery result. Only what a retry
 * cannot change bounces: DB_PERMFAIL (schema missing, a path refused) is
 * an installation error that the administrator fixes, and the mail must
 * wait for that rather than go back to its senders. */
static enum deliver_result result_of(int status)
{
	switch (status) {
	case DB_OK:
		return DELIVER_STORED;
	case DB_NOT_FOUND:
		return DELIVER_UNKNOWN;
	case DB_QUOTA:
		return DELIVER_OVER_QUOTA;
	default:
		return DELIVER_TEMPORARY;
	}
}

enum deliver_result deliver_resolve(struct db *db, const char *address, bool fold_case,
				    struct user *u, char *err, size_t errlen)
{
	struct user found = {0};
	int status = db->ops->user_by_mail(db, address, &found);
	if (status == DB_NOT_FOUND && fold_case) {
		/* Addresses are stored as tpops-useradd was given them, mostly
		 * in lower case, while an MTA passes them on as the sender
		 * wrote them ("Alice@Example.COM"). */
		char folded[512];
		size_t n = strlen(address);
		bool differs = false;
		if (n < sizeof folded) {
			for (size_t i = 0; i <= n; i++) {
				folded[i] = (char)tolower((unsigned char)address[i]);
				differs |= folded[i] != address[i];
			}
			if (differs)
				status = db->ops->user_by_mail(db, folded, &found);
		}
	}
	if (status == DB_OK) {
		*u = found;
		return DELIVER_STORED;
	}
	if (status == DB_NOT_FOUND)
		snprintf(err, errlen, "%s: user unknown", address);
	else
		snprintf(err, errlen, "%s: %s", address, db_error(db));
	return result_of(status);
}

enum deliver_result deliver_check_room(struct db *db, const struct config *cfg,
				       const struct user *u, uint64_t size, char *err,
				       size_t errlen)
{
	if (u->quota <= 0)
		return DELIVER_STORED;
	const struct maildrop_ops *md = maildrop_backend(cfg);
	if (md == NULL) {
		snprintf(err, errlen, "%s: Mailbox: this build cannot deliver there", cfg->path);
		return DELIVER_TEMPORARY;
	}
	uint64_t used = 0;
	int status = md->usage(db, cfg, u, &used, err, errlen);
	if (status != DB_OK)
		return result_of(status == DB_NOT_FOUND ? DB_TEMPFAIL : status);
	/* size 0: is there room for anything at all */
	if (size == 0 ? used >= (uint64_t)u->quota : used + size > (uint64_t)u->quota) {
		snprintf(err, errlen, "%s: over quota: %llu of %lld octets used", u->mail,
			 (unsigned long long)used, (long long)u->quota);
		return DELIVER_OVER_QUOTA;
	}
	return DELIVER_STORED;
}

enum deliver_result deliver_store(struct db *db, const struct config *cfg, const struct user *u,
				  const char *msg, size_t len, char *err, size_t errlen)
{
	const struct maildrop_ops *md = maildrop_backend(cfg);
	if (md == NULL) {
		snprintf(err, errlen, "%s: Mailbox: this build cannot deliver there", cfg->path);
		return DELIVER_TEMPORARY;
	}
	char detail[512] = "";
	int status = md->deliver(db, cfg, u, msg ? msg : "", len, detail, sizeof detail);
	if (status != DB_OK)
		snprintf(err, errlen, "%s: %s", u->mail, detail);
	/* DB_NOT_FOUND from a store means the user vanished under us, or a
	 * path went missing: not an unknown address, a retry decides */
	return status == DB_NOT_FOUND ? DELIVER_TEMPORARY : result_of(status);
}
