/* The key of the SCRAM salts offered for logins without SCRAM keys of
 * their own (unknown users, plaintext-stored passwords): AuthSecret when
 * set, else the random key tpops-dbinit stored in the database once, so
 * that no configuration is needed for the salts not to tell which logins
 * exist. Read once per process, on a worker. */
#ifndef TPOPS_AUTH_SECRET_H
#define TPOPS_AUTH_SECRET_H
#include <stdbool.h>

#include "buf.h"
#include "config.h"

struct db;

/* Appends the key to key and returns true; false (nothing appended) when
 * AuthSecret is unset and the database has no key, or cannot be read now:
 * said once in the log, and sasl_new's key (from Hostname) stays. */
bool auth_salt_key(const struct config *cfg, struct db *db, struct buf *key);

#endif
