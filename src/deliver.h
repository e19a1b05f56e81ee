/* One delivery: an address resolved to its user, the user's quota, the
 * message stored whole and durably in the configured store (the SQL `msg`
 * table or a Maildir), and one result that says what the sender's MTA
 * must do. Shared by tpops-store (Postfix's pipe) and the LMTP listener,
 * so that both deliver exactly alike.
 *
 * Every call may block (SQL, fsync): run it on a storage worker or in a
 * tool, with that thread's database connection. */
#ifndef TPOPS_DELIVER_H
#define TPOPS_DELIVER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "db.h"

enum deliver_result {
	DELIVER_STORED = 0,  /* committed: it survives a crash from now on */
	DELIVER_UNKNOWN,     /* no user has this address: bounce */
	DELIVER_OVER_QUOTA,  /* the user's quota has no room for it: bounce */
	DELIVER_TEMPORARY,   /* store unreachable, disk full, installation
			      * broken: keep the message, try again later */
	DELIVER_PERMANENT,   /* refused for good (larger than the limit) */
};

/* A short name for logs: "stored", "unknown", "over quota", ... */
const char *deliver_result_name(enum deliver_result r);

/* The user whose address is `address` (u to be user_clear()ed after
 * DELIVER_STORED; untouched otherwise). DELIVER_STORED here means "found".
 * With fold_case, an address no user has exactly is tried again in lower
 * case: for LMTP, where the MTA passes addresses on as the sender wrote
 * them; Postfix's pipe folds them itself (its h and u flags). */
enum deliver_result deliver_resolve(struct db *db, const char *address, bool fold_case,
				    struct user *u, char *err, size_t errlen);

/* Whether u's quota still has room for `size` more octets (0: any room at
 * all), counting what is stored now; DELIVER_STORED means "room". An
 * early answer for LMTP's RCPT: deliver_store checks again, exactly. */
enum deliver_result deliver_check_room(struct db *db, const struct config *cfg,
				       const struct user *u, uint64_t size, char *err,
				       size_t errlen);

/* Stores msg (len octets, as received: LF or CRLF line ends) for u, whole
 * and durably, or nothing. */
enum deliver_result deliver_store(struct db *db, const struct config *cfg, const struct user *u,
				  const char *msg, size_t len, char *err, size_t errlen);

#endif
