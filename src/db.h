/* The SQL database: users, maildrop lock leases, and the `msg` table.
 * One implementation per engine (db_sqlite.c, db_mysql*.c) behind
 * struct db_ops; nothing above this interface knows which engine it has.
 *
 * A struct db is one connection, used by one thread at a time: each storage
 * worker keeps its own (worker_db()), each tool opens one. Every call may
 * block; none may run on an I/O thread. */
#ifndef TPOPS_DB_H
#define TPOPS_DB_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "tpops_limits.h"

enum db_status {
	DB_OK = 0,
	DB_NOT_FOUND = 1, /* no such user / row; a lost lock */
	DB_CONFLICT = 2,  /* duplicate login or address; lock held by another owner */
	DB_QUOTA = 3,     /* msg_store: the message would exceed the user's quota */
	DB_AGAIN = 4,     /* a non-blocking call would wait: run the blocking one on a worker */
	DB_TEMPFAIL = -1, /* database unreachable, busy, I/O error: try again later */
	DB_PERMFAIL = -2, /* schema missing or broken, constraint the retry cannot fix */
};

struct user {
	int64_t uid;
	char *login;
	char *passwd; /* stored form, see password.h */
	char *mail;
	char *maildir;
	int64_t quota; /* bytes; 0 = none */
};

/* One message of the `msg` table as the maildrop lists it. */
struct db_msg {
	int64_t id;
	uint64_t size;     /* octets as POP3 sends them (CRLF), the `size` column */
	uint64_t raw_size; /* octets of header + body as stored */
	char timestamp[15]; /* YYYYMMDDhhmmss: MySQL's `timestamp + 0` of a DATETIME */
	char uidl[POP3_MAX_UIDL + 1]; /* the imported UIDL (msg.uidl), or "" */
};

struct db;

struct db_ops {
	const char *name;
	/* The engine reconnects by itself after a lost connection (and
	 * decides which failures need it): a temporary failure is no reason
	 * to close it. */
	bool reconnects;
	/* Opens an existing database; never creates one. */
	int (*open)(const struct config *cfg, struct db **db_r, char *err, size_t errlen);
	/* Optional: open, making the database where the engine keeps it in a
	 * file (SQLite). NULL: the server's administrator creates it. */
	int (*create)(const struct config *cfg, struct db **db_r, char *err, size_t errlen);
	void (*close)(struct db *db);
	/* Creates the tables when they are missing, or upgrades an older
	 * schema in place; stores a random SCRAM salt key if there is none. */
	int (*schema_install)(struct db *db);
	/* Optional, at the daemon's start: DB_PERMFAIL, with an error saying
	 * to run tpops-dbinit, when the schema cannot keep a rule tpops relies
	 * on (the login rule: an older SQLite file without its unique indexes,
	 * where a login could find either of two users; a MariaDB user table
	 * whose collation tells letter case apart). */
	int (*schema_check)(struct db *db);

	int (*user_by_login)(struct db *db, const char *login, struct user *u);
	int (*user_by_mail)(struct db *db, const char *mail, struct user *u);
	int (*user_add)(struct db *db, const struct user *u);
	int (*user_delete)(struct db *db, const char *login);
	int (*user_set_password)(struct db *db, const char *login, const char *passwd);
	int (*user_list)(struct db *db, void (*each)(const struct user *u, void *ctx), void *ctx);
	/* One user (the newest) of each password scheme stored with a
	 * "{SCHEME}" or "$id$" prefix: what the stand-in for unknown users is
	 * measured against (auth_standin.h). */
	int (*user_samples)(struct db *db, void (*each)(const struct user *u, void *ctx),
			    void *ctx);
	/* The random SCRAM salt key schema_install stores once (a malloc'd
	 * string in *value_r); DB_NOT_FOUND in a database made before it. */
	int (*salt_key)(struct db *db, char **value_r);

	/* Lease locks: a row (uid, owner, expiry). acquire -> DB_CONFLICT when
	 * another owner holds an unexpired lease; renew -> DB_NOT_FOUND when
	 * the lease was lost. */
	int (*lock_acquire)(struct db *db, int64_t uid, const char *owner, int lease_seconds);
	int (*lock_renew)(struct db *db, int64_t uid, const char *owner, int lease_seconds);
	int (*lock_release)(struct db *db, int64_t uid, const char *owner);

	/* Messages, arrival order (timestamp, then id). *msgs_r is malloc'd. */
	int (*msg_list)(struct db *db, int64_t uid, struct db_msg **msgs_r, size_t *count_r);
	/* Reads len octets of header||body from offset: fewer only when the
	 * message ends first (*got_r 0: offset is at the end). */
	int (*msg_read)(struct db *db, int64_t id, uint64_t offset, void *buf, size_t len,
			size_t *got_r);
	/* Deletes the ids of uid in one transaction, only while owner still
	 * holds the lock (else DB_NOT_FOUND and nothing deleted). */
	int (*msg_delete)(struct db *db, int64_t uid, const char *owner, const int64_t *ids,
			  size_t count);
	/* Stores one message in one transaction, refusing with DB_QUOTA when
	 * quota > 0 and the stored sizes plus this one exceed it. */
	int (*msg_store)(struct db *db, int64_t uid, int64_t quota, const char *header,
			 size_t header_len, const char *body, size_t body_len, uint64_t size);
	/* tpops-import: stores one message with the UIDL it had on another
	 * server (msg.uidl, and a msg_imported row), in one transaction,
	 * without a quota check (the mail was the user's before the move). */
	int (*msg_import)(struct db *db, int64_t uid, const char *header, size_t header_len,
			  const char *body, size_t body_len, uint64_t size, const char *uidl);
	/* tpops-import: every UIDL msg_import has stored for uid, whether or
	 * not that message is still there (the msg_imported table). */
	int (*msg_imported)(struct db *db, int64_t uid, void (*each)(const char *uidl, void *ctx),
			    void *ctx);
	/* Total `size` of a user's messages (quota accounting). */
	int (*msg_usage)(struct db *db, int64_t uid, uint64_t *bytes_r);

	const char *(*error)(struct db *db); /* last error, for logs */
};

struct db {
	const struct db_ops *ops;
};

/* The engine the configuration names. */
const struct db_ops *db_engine(const struct config *cfg);
int db_open(const struct config *cfg, struct db **db_r, char *err, size_t errlen);
/* db_open, creating a missing database file: for tpops-dbinit only. */
int db_create(const struct config *cfg, struct db **db_r, char *err, size_t errlen);
void db_close(struct db *db);
const char *db_error(struct db *db);

void user_clear(struct user *u);

/* A new random SCRAM salt key, as schema_install stores it: 32 random
 * octets in base64. malloc'd, NULL when the system has no randomness. */
char *db_new_salt_key(void);
#define DB_SALT_KEY_NAME "scram-salt-key"

extern const struct db_ops db_sqlite_ops;
extern const struct db_ops db_mysql_ops;

/* SIGHUP: every MySQL connection that failed over to another MySQL_Server
 * host moves back to the first at its next operation. Thread-safe. */
void db_mysql_failback(void);

#endif
