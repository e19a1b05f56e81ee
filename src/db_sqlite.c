/* The SQL database on SQLite, the embedded default. */
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "db.h"
#include "metrics.h"
#include "tpops_limits.h"
#include "schema_sqlite.h"
#include "xalloc.h"

enum stmt_id {
	ST_USER_BY_LOGIN,
	ST_USER_BY_MAIL,
	ST_USER_ADD,
	ST_USER_DELETE,
	ST_USER_SET_PASSWORD,
	ST_USER_LIST,
	ST_USER_SAMPLES,
	ST_SECRET_GET,
	ST_SECRET_ADD,
	ST_LOCK_TAKE,
	ST_LOCK_RENEW,
	ST_LOCK_RELEASE,
	ST_LOCK_OWNED,
	ST_MSG_LIST,
	ST_MSG_DELETE,
	ST_MSG_INSERT,
	ST_MSG_USAGE,
	ST_IMPORTED_ADD,
	ST_IMPORTED_LIST,
	ST_MSG_LENGTHS,
	ST_PART_READ,
	ST_PART_INSERT,
	ST_PART_DELETE,
	ST_BEGIN,
	ST_BEGIN_READ,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_COUNT
};

#define USER_COLUMNS "uid, login, passwd, mail, maildir, quota"
/* the newest user of each password scheme prefix */
#define USER_SAMPLES_WHERE(table)                                                              \
	" WHERE uid IN (SELECT MAX(uid) FROM " table                                           \
	" WHERE passwd LIKE '{%' OR passwd LIKE '$%'"                                          \
	" GROUP BY CASE WHEN passwd LIKE '{%' THEN SUBSTR(passwd, 1, INSTR(passwd, '}'))"      \
	" ELSE SUBSTR(passwd, 1, 4) END)"
static const char *const stmt_sql[ST_COUNT] = {
	/* NOCASE folds ASCII letters only: tpops' login rule
	 * (auth_login.h), served by the NOCASE unique indexes */
	[ST_USER_BY_LOGIN] = "SELECT " USER_COLUMNS " FROM \"user\" WHERE login = ?1 COLLATE NOCASE",
	[ST_USER_BY_MAIL] = "SELECT " USER_COLUMNS " FROM \"user\" WHERE mail = ?1 COLLATE NOCASE",
	[ST_USER_ADD] = "INSERT INTO \"user\" (login, passwd, mail, maildir, quota) "
			"VALUES (?1, ?2, ?3, ?4, ?5)",
	[ST_USER_DELETE] = "DELETE FROM \"user\" WHERE login = ?1 COLLATE NOCASE",
	[ST_USER_SET_PASSWORD] = "UPDATE \"user\" SET passwd = ?2 WHERE login = ?1 COLLATE NOCASE",
	[ST_USER_LIST] = "SELECT " USER_COLUMNS " FROM \"user\" ORDER BY login",
	[ST_SECRET_GET] = "SELECT value FROM tpops_secret WHERE name = ?1",
	[ST_SECRET_ADD] = "INSERT OR IGNORE INTO tpops_secret (name, value) VALUES (?1, ?2)",
	[ST_USER_SAMPLES] = "SELECT " USER_COLUMNS " FROM \"user\"" USER_SAMPLES_WHERE("\"user\""),
	/* one statement, one write transaction: a free maildrop, or one
	 * whose lease expired, is taken; a held one is left alone (no row
	 * changes) */
	[ST_LOCK_TAKE] = "INSERT INTO locks (uid, owner, expires, timestamp) "
			 "VALUES (?1, ?2, ?3, datetime(?4, 'unixepoch', 'localtime')) "
			 "ON CONFLICT (uid) DO UPDATE SET owner = excluded.owner, "
			 "expires = excluded.expires, timestamp = excluded.timestamp "
			 "WHERE locks.expires < ?4",
	[ST_LOCK_RENEW] = "UPDATE locks SET expires = ?3 WHERE uid = ?1 AND owner = ?2",
	[ST_LOCK_RELEASE] = "DELETE FROM locks WHERE uid = ?1 AND owner = ?2",
	[ST_LOCK_OWNED] = "SELECT 1 FROM locks WHERE uid = ?1 AND owner = ?2",
	/* the size column stands in for the stored length: summing the
	 * parts of every message would read them all */
	[ST_MSG_LIST] = "SELECT id, size, size, timestamp, uidl FROM msg "
			"WHERE uid = ?1 ORDER BY timestamp, id",
	[ST_MSG_DELETE] = "DELETE FROM msg WHERE id = ?1 AND uid = ?2",
	[ST_MSG_INSERT] = "INSERT INTO msg (uid, msgno, timestamp, header, body, size, uidl) "
			  "VALUES (?1, 0, datetime('now', 'localtime'), ?2, ?3, ?4, ?5)",
	[ST_MSG_USAGE] = "SELECT COALESCE(SUM(size), 0) FROM msg WHERE uid = ?1",
	[ST_IMPORTED_ADD] = "INSERT OR IGNORE INTO msg_imported (uid, uidl) VALUES (?1, ?2)",
	[ST_IMPORTED_LIST] = "SELECT uidl FROM msg_imported WHERE uid = ?1",
	[ST_MSG_LENGTHS] = "SELECT length(header), length(body) FROM msg WHERE id = ?1",
	[ST_PART_READ] = "SELECT data FROM msg_part WHERE id = ?1 AND pos = ?2",
	[ST_PART_INSERT] = "INSERT INTO msg_part (id, pos, data) VALUES (?1, ?2, ?3)",
	[ST_PART_DELETE] = "DELETE FROM msg_part WHERE id = ?1",
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_BEGIN_READ] = "BEGIN",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
};

struct db_sqlite {
	struct db db;
	sqlite3 *handle;
	sqlite3_stmt *stmts[ST_COUNT];
	char error[1024];
};

static struct db_sqlite *db_sqlite(struct db *db)
{
	return (struct db_sqlite *)db;
}

/* SQLITE_BUSY and I/O errors may go away; anything else is permanent.
 * READONLY (file or directory permissions, a read-only mount) is the
 * administrator's to fix, not the message's fault: tpops-store must make
 * Postfix retry, not bounce. */
static int status_of(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
	case SQLITE_READONLY:
	case SQLITE_IOERR:
	case SQLITE_FULL:
	case SQLITE_CANTOPEN:
	case SQLITE_NOMEM:
	case SQLITE_PROTOCOL:
		return DB_TEMPFAIL;
	case SQLITE_CONSTRAINT:
		return DB_CONFLICT;
	default:
		return DB_PERMFAIL;
	}
}

static int fail(struct db_sqlite *d, int rc, const char *what)
{
	snprintf(d->error, sizeof d->error, "sqlite: %s: %s", what, sqlite3_errmsg(d->handle));
	if (status_of(rc) < 0)
		metrics_db_error("sqlite");
	return status_of(rc);
}

static sqlite3_stmt *stmt(struct db_sqlite *d, enum stmt_id id)
{
	if (d->stmts[id] == NULL &&
	    sqlite3_prepare_v3(d->handle, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &d->stmts[id],
			       NULL) != SQLITE_OK) {
		fail(d, SQLITE_ERROR, "prepare");
		return NULL;
	}
	sqlite3_reset(d->stmts[id]);
	sqlite3_clear_bindings(d->stmts[id]);
	return d->stmts[id];
}

/* Runs a statement that returns no rows. */
static int exec_stmt(struct db_sqlite *d, sqlite3_stmt *s, const char *what)
{
	if (s == NULL)
		return DB_PERMFAIL;
	int rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		return fail(d, rc, what);
	return DB_OK;
}

static int begin(struct db_sqlite *d)
{
	return exec_stmt(d, stmt(d, ST_BEGIN), "begin transaction");
}

static int commit(struct db_sqlite *d)
{
	return exec_stmt(d, stmt(d, ST_COMMIT), "commit");
}

static void rollback(struct db_sqlite *d)
{
	if (!sqlite3_get_autocommit(d->handle))
		exec_stmt(d, stmt(d, ST_ROLLBACK), "rollback");
}

static void bind_text(sqlite3_stmt *s, int i, const char *text)
{
	sqlite3_bind_text(s, i, text ? text : "", -1, SQLITE_STATIC);
}

/* create: make the file when it is missing (tpops-dbinit only). Everyone
 * else opens what exists: a path on a volume not mounted yet must fail,
 * not gain an empty database (and -wal, -shm) that hides the real one. */
static int sqlite_open_file(const struct config *cfg, bool create, struct db **db_r, char *err,
			    size_t errlen)
{
	struct db_sqlite *d = xcalloc(1, sizeof *d);
	d->db.ops = &db_sqlite_ops;
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
	int rc = sqlite3_open_v2(cfg->sqlite_path, &d->handle, flags, NULL);
	if (rc != SQLITE_OK) {
		snprintf(err, errlen, "sqlite: cannot open %s: %s%s", cfg->sqlite_path,
			 d->handle ? sqlite3_errmsg(d->handle) : sqlite3_errstr(rc),
			 create ? "" : " (a missing database is created by tpops-dbinit)");
		sqlite3_close(d->handle);
		free(d);
		metrics_db_connect("sqlite", false);
		return DB_TEMPFAIL;
	}
	sqlite3_busy_timeout(d->handle, SQLITE_BUSY_TIMEOUT_MS);
	/* page_size (only takes effect on a new, empty database): a RETR
	 * reads a message's overflow pages one pread each, and 16 KiB pages
	 * read a 10 MiB message half again as fast as 4 KiB ones, for
	 * somewhat larger WAL frames per lease write (docs/BENCHMARKS.md).
	 * WAL: readers never wait for the writer. synchronous=NORMAL for
	 * lock leases and deletions (a power cut may undo the last of them:
	 * a lease that expires anyway, a message that comes back, never a
	 * lost one); msg_store switches to FULL for its commit. */
	char *msg = NULL;
	rc = sqlite3_exec(d->handle,
			  "PRAGMA page_size = 16384;"
			  " PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
			  " PRAGMA foreign_keys = OFF;",
			  NULL, NULL, &msg);
	if (rc != SQLITE_OK) {
		snprintf(err, errlen, "sqlite: %s: %s", cfg->sqlite_path, msg ? msg : sqlite3_errstr(rc));
		sqlite3_free(msg);
		sqlite3_close(d->handle);
		free(d);
		metrics_db_connect("sqlite", false);
		return status_of(rc);
	}
	metrics_db_connect("sqlite", true);
	*db_r = &d->db;
	return DB_OK;
}

static int sqlite_open(const struct config *cfg, struct db **db_r, char *err, size_t errlen)
{
	return sqlite_open_file(cfg, false, db_r, err, errlen);
}

static int sqlite_create(const struct config *cfg, struct db **db_r, char *err, size_t errlen)
{
	return sqlite_open_file(cfg, true, db_r, err, errlen);
}

static void sqlite_close(struct db *db)
{
	struct db_sqlite *d = db_sqlite(db);
	for (int i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(d->stmts[i]);
	sqlite3_close(d->handle);
	free(d);
}

/* Whether table has column (false when the table does not exist). */
static bool has_column(struct db_sqlite *d, const char *table, const char *column)
{
	sqlite3_stmt *s = NULL;
	bool found = false;
	if (sqlite3_prepare_v2(d->handle, "SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2", -1,
			       &s, NULL) != SQLITE_OK)
		return false;
	sqlite3_bind_text(s, 1, table, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, column, -1, SQLITE_STATIC);
	found = sqlite3_step(s) == SQLITE_ROW;
	sqlite3_finalize(s);
	return found;
}

/* Users that tpops' login rule makes one (logins, or addresses, equal
 * but for the case of ASCII letters) but a database made before the rule
 * holds as several: the NOCASE unique indexes cannot be built over them,
 * and a login would find either user. Returns DB_CONFLICT with an error
 * naming them and what to do; nothing is changed. */
static int find_case_conflicts(struct db_sqlite *d)
{
	static const char *const columns[] = {"login", "mail"};
	struct buf found = BUF_INIT;
	const char *which = NULL;
	int status = DB_OK;
	for (size_t c = 0; c < 2 && found.len == 0; c++) {
		char sql[256];
		snprintf(sql, sizeof sql,
			 "SELECT group_concat(printf('\"%%s\" (uid %%d)', %s, uid), ', ') "
			 "FROM (SELECT %s, uid FROM \"user\" ORDER BY uid) "
			 "GROUP BY %s COLLATE NOCASE HAVING count(*) > 1 LIMIT 5",
			 columns[c], columns[c], columns[c]);
		sqlite3_stmt *s = NULL;
		int rc = sqlite3_prepare_v2(d->handle, sql, -1, &s, NULL);
		if (rc != SQLITE_OK) {
			status = fail(d, rc, "looking for users that differ only in case");
			break;
		}
		while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
			buf_printf(&found, "%s%s", found.len ? "; " : "",
				   (const char *)sqlite3_column_text(s, 0));
			which = columns[c];
		}
		if (rc != SQLITE_DONE)
			status = fail(d, rc, "looking for users that differ only in case");
		sqlite3_finalize(s);
	}
	if (status == DB_OK && found.len > 0) {
		bool login = strcmp(which, "login") == 0;
		snprintf(d->error, sizeof d->error,
			 "sqlite: these users have %s that differ only in the case of ASCII "
			 "letters: %s. tpops takes such %s to name one user (docs/SECURITY.md, "
			 "\"Logins\"), so each must have one of its own: rename or delete all "
			 "but one of each group by uid (sqlite3 %s 'UPDATE \"user\" SET %s = "
			 "... WHERE uid = ...'; tpops-userdel cannot tell them apart), then run "
			 "tpops-dbinit again. Nothing was changed",
			 login ? "logins" : "addresses", found.data,
			 login ? "logins" : "addresses", sqlite3_db_filename(d->handle, "main"),
			 which);
		status = DB_CONFLICT;
	}
	buf_free(&found);
	return status;
}

static int sqlite_schema_install(struct db *db)
{
	struct db_sqlite *d = db_sqlite(db);
	char *msg = NULL;
	int rc;
	/* upgrade: the login rule's unique indexes need users that follow it */
	if (has_column(d, "user", "login") && (rc = find_case_conflicts(d)) != DB_OK)
		return rc;
	/* upgrade: msg.uidl (imported UIDLs) came after the first schema;
	 * the schema's index needs it, so it is added first */
	if (has_column(d, "msg", "id") && !has_column(d, "msg", "uidl") &&
	    (rc = sqlite3_exec(d->handle, "ALTER TABLE msg ADD COLUMN uidl TEXT", NULL, NULL,
			       &msg)) != SQLITE_OK) {
		snprintf(d->error, sizeof d->error, "sqlite: adding msg.uidl: %s",
			 msg ? msg : sqlite3_errstr(rc));
		sqlite3_free(msg);
		return status_of(rc);
	}
	rc = sqlite3_exec(d->handle, schema_sqlite_sql, NULL, NULL, &msg);
	if (rc != SQLITE_OK) {
		snprintf(d->error, sizeof d->error, "sqlite: creating the schema: %s",
			 msg ? msg : sqlite3_errstr(rc));
		sqlite3_free(msg);
		return status_of(rc);
	}
	/* the SCRAM salt key, once: a key already there stays */
	char *key = db_new_salt_key();
	if (key == NULL) {
		snprintf(d->error, sizeof d->error, "no random numbers for the SCRAM salt key");
		return DB_PERMFAIL;
	}
	sqlite3_stmt *s = stmt(d, ST_SECRET_ADD);
	if (s != NULL) {
		bind_text(s, 1, DB_SALT_KEY_NAME);
		bind_text(s, 2, key);
	}
	int status = exec_stmt(d, s, "storing the SCRAM salt key");
	if (s != NULL)
		sqlite3_clear_bindings(s);
	free_secret(key, strlen(key) + 1);
	return status;
}

/* The login rule's unique indexes (sql/sqlite.sql) are there: without
 * them "alice" and "ALICE" may be two users, and a login finds either. */
static int sqlite_schema_check(struct db *db)
{
	struct db_sqlite *d = db_sqlite(db);
	sqlite3_stmt *s = NULL;
	int rc = sqlite3_prepare_v2(d->handle,
				    "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND "
				    "name IN ('user_login_nocase', 'user_mail_nocase')",
				    -1, &s, NULL);
	if (rc != SQLITE_OK)
		return fail(d, rc, "checking the schema");
	rc = sqlite3_step(s);
	int found = rc == SQLITE_ROW ? sqlite3_column_int(s, 0) : -1;
	sqlite3_finalize(s);
	if (found < 0)
		return fail(d, rc, "checking the schema");
	if (found == 2)
		return DB_OK;
	snprintf(d->error, sizeof d->error,
		 "sqlite: table user has no unique index on logins and addresses under tpops' "
		 "rule (ASCII letters in either case name one user): the database was made by "
		 "an older tpops; upgrade it with tpops-dbinit");
	return DB_PERMFAIL;
}

static char *column_strdup(sqlite3_stmt *s, int col);

static int sqlite_salt_key(struct db *db, char **value_r)
{
	struct db_sqlite *d = db_sqlite(db);
	sqlite3_stmt *s = stmt(d, ST_SECRET_GET);
	if (s == NULL)
		return DB_PERMFAIL;
	bind_text(s, 1, DB_SALT_KEY_NAME);
	int rc = sqlite3_step(s);
	int status = DB_NOT_FOUND;
	if (rc == SQLITE_ROW) {
		*value_r = column_strdup(s, 0);
		status = DB_OK;
	} else if (rc != SQLITE_DONE) {
		status = fail(d, rc, "reading the SCRAM salt key");
	}
	sqlite3_reset(s);
	return status;
}

static char *column_strdup(sqlite3_stmt *s, int col)
{
	const unsigned char *text = sqlite3_column_text(s, col);
	return xstrndup(text ? (const char *)text : "", (size_t)sqlite3_column_bytes(s, col));
}

static void user_from_row(sqlite3_stmt *s, struct user *u)
{
	u->uid = sqlite3_column_int64(s, 0);
	u->login = column_strdup(s, 1);
	u->passwd = column_strdup(s, 2);
	u->mail = column_strdup(s, 3);
	u->maildir = column_strdup(s, 4);
	u->quota = sqlite3_column_int64(s, 5);
}

static int user_lookup(struct db_sqlite *d, enum stmt_id id, const char *key, struct user *u)
{
	sqlite3_stmt *s = stmt(d, id);
	if (s == NULL)
		return DB_PERMFAIL;
	bind_text(s, 1, key);
	int rc = sqlite3_step(s);
	int status = DB_NOT_FOUND;
	if (rc == SQLITE_ROW) {
		user_from_row(s, u);
		status = DB_OK;
	} else if (rc != SQLITE_DONE) {
		status = fail(d, rc, "looking up a user");
	}
	sqlite3_reset(s);
	return status;
}

static int sqlite_user_by_login(struct db *db, const char *login, struct user *u)
{
	return user_lookup(db_sqlite(db), ST_USER_BY_LOGIN, login, u);
}

static int sqlite_user_by_mail(struct db *db, const char *mail, struct user *u)
{
	return user_lookup(db_sqlite(db), ST_USER_BY_MAIL, mail, u);
}

static int sqlite_user_add(struct db *db, const struct user *u)
{
	struct db_sqlite *d = db_sqlite(db);
	sqlite3_stmt *s = stmt(d, ST_USER_ADD);
	if (s == NULL)
		return DB_PERMFAIL;
	bind_text(s, 1, u->login);
	bind_text(s, 2, u->passwd);
	bind_text(s, 3, u->mail);
	bind_text(s, 4, u->maildir);
	sqlite3_bind_int64(s, 5, u->quota);
	return exec_stmt(d, s, "adding a user");
}

static int changed_one(struct db_sqlite *d, int status)
{
	if (status != DB_OK)
		return status;
	return sqlite3_changes(d->handle) > 0 ? DB_OK : DB_NOT_FOUND;
}

static int sqlite_user_delete(struct db *db, const char *login)
{
	struct db_sqlite *d = db_sqlite(db);
	sqlite3_stmt *s = stmt(d, ST_USER_DELETE);
	if (s == NULL)
		return DB_PERMFAIL;
	bind_text(s, 1, login);
	return changed_one(d, exec_stmt(d, s, "deleting a user"));
}

static int sqlite_user_set_password(struct db *db, const char *login, const char *passwd)
{
	struct db_sqlite *d = db_sqlite(db);
	sqlite3_stmt *s = stmt(d, ST_USER_SET_PASSWORD);
	if (s == NULL)
		return DB_PERMFAIL;
	bind_text(s, 1, login);
	bind_text(s, 2, passwd);
	int status = changed_one(d, exec_stmt(d, s, "changing a password"));
	sqlite3_clear_bindings(s); /* the statement held a pointer to the hash */
	return status;
}

static int users_of(struct db *db, int id, void (*each)(const struct user *u, void *ctx),
		    void *ctx)
{
	struct db_sqlite *d = db_sqlite(db);
	sqlite3_stmt *s = stmt(d, id);
	if (s == NULL)
		return DB_PERMFAIL;
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct user u = {0};
		user_from_row(s, &u);
		each(&u, ctx);
		user_clear(&u);
	}
	sqlite3_reset(s);
	return rc == SQLITE_DONE ? DB_OK : fail(d, rc, "listing users");
}

static int sqlite_user_list(struct db *db, void (*each)(const struct user *u, void *ctx), void *ctx)
{
	return users_of(db, ST_USER_LIST, each, ctx);
}

static int sqlite_user_samples(struct db *db, void (*each)(const struct user *u, void *ctx),
			       void *ctx)
{
	return users_of(db, ST_USER_SAMPLES, each, ctx);
}

static int sqlite_lock_acquire(struct db *db, int64_t uid, const char *owner, int lease)
{
	struct db_sqlite *d = db_sqlite(db);
	int64_t now = (int64_t)time(NULL);
	sqlite3_stmt *s = stmt(d, ST_LOCK_TAKE);
	if (s == NULL)
		return DB_PERMFAIL;
	sqlite3_bind_int64(s, 1, uid);
	bind_text(s, 2, owner);
	sqlite3_bind_int64(s, 3, now + lease);
	sqlite3_bind_int64(s, 4, now);
	int status = exec_stmt(d, s, "taking a lock");
	if (status != DB_OK)
		return status;
	return sqlite3_changes(d->handle) > 0 ? DB_OK : DB_CONFLICT;
}

static int lock_update(struct db *db, enum stmt_id id, int64_t uid, const char *owner, int lease)
{
	struct db_sqlite *d = db_sqlite(db);
	sqlite3_stmt *s = stmt(d, id);
	if (s == NULL)
		return DB_PERMFAIL;
	sqlite3_bind_int64(s, 1, uid);
	bind_text(s, 2, owner);
	sqlite3_bind_int64(s, 3, (int64_t)time(NULL) + lease);
	return changed_one(d, exec_stmt(d, s, "updating a lock"));
}

static int sqlite_lock_renew(struct db *db, int64_t uid, const char *owner, int lease)
{
	return lock_update(db, ST_LOCK_RENEW, uid, owner, lease);
}

static int sqlite_lock_release(struct db *db, int64_t uid, const char *owner)
{
	return lock_update(db, ST_LOCK_RELEASE, uid, owner, 0);
}

/* "2026-11-26 19:35:23" -> "20261126193523" (MySQL's DATETIME + 0). */
static void timestamp_digits(const char *text, char out[15])
{
	size_t n = 0;
	for (; text != NULL && *text != '\0' && n < 14; text++)
		if (*text >= '0' && *text <= '9')
			out[n++] = *text;
	while (n < 14)
		out[n++] = '0';
	out[14] = '\0';
}

static int sqlite_msg_list(struct db *db, int64_t uid, struct db_msg **msgs_r, size_t *count_r)
{
	struct db_sqlite *d = db_sqlite(db);
	sqlite3_stmt *s = stmt(d, ST_MSG_LIST);
	if (s == NULL)
		return DB_PERMFAIL;
	sqlite3_bind_int64(s, 1, uid);
	size_t count = 0, cap = 16;
	struct db_msg *msgs = xmalloc(cap * sizeof *msgs);
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (count == cap) {
			cap *= 2;
			msgs = xrealloc(msgs, cap * sizeof *msgs);
		}
		struct db_msg *m = &msgs[count++];
		m->id = sqlite3_column_int64(s, 0);
		m->size = (uint64_t)sqlite3_column_int64(s, 1);
		m->raw_size = (uint64_t)sqlite3_column_int64(s, 2);
		timestamp_digits((const char *)sqlite3_column_text(s, 3), m->timestamp);
		const unsigned char *uidl = sqlite3_column_text(s, 4);
		size_t uidl_len = (size_t)sqlite3_column_bytes(s, 4);
		if (uidl == NULL || uidl_len > POP3_MAX_UIDL)
			uidl_len = 0; /* tpops-import stores none longer */
		if (uidl_len > 0)
			memcpy(m->uidl, uidl, uidl_len);
		m->uidl[uidl_len] = '\0';
	}
	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		free(msgs);
		return fail(d, rc, "listing messages");
	}
	*msgs_r = msgs;
	*count_r = count;
	return DB_OK;
}

/* Reads from one BLOB column of msg (header or body, at most
 * MSG_INLINE_MAX octets, so a fresh handle per piece is cheap). */
static int read_column(struct db_sqlite *d, const char *column, int64_t id, uint64_t offset,
		       char *buf, size_t len, size_t *got_r)
{
	sqlite3_blob *blob = NULL;
	int rc = sqlite3_blob_open(d->handle, "main", "msg", column, id, 0, &blob);
	if (rc != SQLITE_OK) {
		int status = fail(d, rc, "opening a message");
		sqlite3_blob_close(blob);
		return rc == SQLITE_ERROR ? DB_NOT_FOUND : status;
	}
	uint64_t total = (uint64_t)sqlite3_blob_bytes(blob);
	size_t n = offset < total ? (total - offset < len ? (size_t)(total - offset) : len) : 0;
	rc = n > 0 ? sqlite3_blob_read(blob, buf, (int)n, (int)offset) : SQLITE_OK;
	sqlite3_blob_close(blob);
	if (rc != SQLITE_OK)
		return fail(d, rc, "reading a message");
	*got_r = n;
	return DB_OK;
}

/* Reads from the body parts of a large message: part p holds body octets
 * [p * MSG_PART_SIZE, (p + 1) * MSG_PART_SIZE), each one indexed row, so
 * a piece anywhere in a 1 GiB message costs one lookup. */
static int read_parts(struct db_sqlite *d, int64_t id, uint64_t offset, char *buf, size_t len,
		      size_t *got_r)
{
	size_t got = 0;
	while (got < len) {
		uint64_t at = offset + got;
		sqlite3_stmt *s = stmt(d, ST_PART_READ);
		if (s == NULL)
			return DB_PERMFAIL;
		sqlite3_bind_int64(s, 1, id);
		sqlite3_bind_int64(s, 2, (int64_t)(at / MSG_PART_SIZE));
		int rc = sqlite3_step(s);
		if (rc == SQLITE_DONE) {
			sqlite3_reset(s);
			break; /* past the last part: the end of the message */
		}
		if (rc != SQLITE_ROW) {
			sqlite3_reset(s);
			return fail(d, rc, "reading a message part");
		}
		const char *data = sqlite3_column_blob(s, 0);
		size_t size = (size_t)sqlite3_column_bytes(s, 0);
		size_t in = (size_t)(at % MSG_PART_SIZE);
		size_t n = in < size ? size - in : 0;
		if (n > len - got)
			n = len - got;
		if (n > 0)
			memcpy(buf + got, data + in, n);
		sqlite3_reset(s);
		got += n;
		if (n == 0 || in + n < MSG_PART_SIZE)
			break; /* a short part is the last one */
	}
	*got_r = got;
	return DB_OK;
}

/* The message is header || body || parts; a RETR reads it piece by piece
 * from any worker, so nothing is kept between pieces. */
static int msg_read_in_transaction(struct db_sqlite *d, int64_t id, uint64_t offset, void *buf,
				   size_t len, size_t *got_r)
{
	sqlite3_stmt *s = stmt(d, ST_MSG_LENGTHS);
	if (s == NULL)
		return DB_PERMFAIL;
	sqlite3_bind_int64(s, 1, id);
	int rc = sqlite3_step(s);
	uint64_t header_len = 0, body_len = 0;
	if (rc == SQLITE_ROW) {
		header_len = (uint64_t)sqlite3_column_int64(s, 0);
		body_len = (uint64_t)sqlite3_column_int64(s, 1);
	}
	sqlite3_reset(s);
	if (rc == SQLITE_DONE) {
		snprintf(d->error, sizeof d->error, "message %lld is gone", (long long)id);
		return DB_NOT_FOUND;
	}
	if (rc != SQLITE_ROW)
		return fail(d, rc, "looking up a message");

	char *out = buf;
	size_t got = 0, n = 0;
	int status = DB_OK;
	if (offset < header_len) {
		status = read_column(d, "header", id, offset, out, len, &n);
		got += n;
	}
	if (status == DB_OK && got < len && offset + got < header_len + body_len) {
		status = read_column(d, "body", id, offset + got - header_len, out + got, len - got,
				     &n);
		got += n;
	}
	if (status == DB_OK && got < len) {
		status = read_parts(d, id, offset + got - header_len - body_len, out + got,
				    len - got, &n);
		got += n;
	}
	*got_r = got;
	return status;
}

static int sqlite_msg_read(struct db *db, int64_t id, uint64_t offset, void *buf, size_t len,
			   size_t *got_r)
{
	struct db_sqlite *d = db_sqlite(db);
	/* one read transaction for the lengths and every column and part
	 * read: one snapshot, and one set of WAL read locks instead of one
	 * per statement */
	int status = exec_stmt(d, stmt(d, ST_BEGIN_READ), "begin transaction");
	if (status != DB_OK)
		return status;
	status = msg_read_in_transaction(d, id, offset, buf, len, got_r);
	if (status == DB_OK)
		status = commit(d);
	if (status != DB_OK)
		rollback(d);
	return status;
}

static int sqlite_msg_delete(struct db *db, int64_t uid, const char *owner, const int64_t *ids,
			     size_t count)
{
	struct db_sqlite *d = db_sqlite(db);
	int status = begin(d);
	if (status != DB_OK)
		return status;
	sqlite3_stmt *s = stmt(d, ST_LOCK_OWNED);
	if (s == NULL)
		goto fail;
	sqlite3_bind_int64(s, 1, uid);
	bind_text(s, 2, owner);
	int rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc == SQLITE_DONE) { /* the lease was lost: someone else may hold it */
		status = DB_NOT_FOUND;
		snprintf(d->error, sizeof d->error, "the maildrop lock was lost");
		goto fail;
	}
	if (rc != SQLITE_ROW) {
		status = fail(d, rc, "checking the lock");
		goto fail;
	}
	for (size_t i = 0; i < count; i++) {
		if ((s = stmt(d, ST_MSG_DELETE)) == NULL)
			goto fail;
		sqlite3_bind_int64(s, 1, ids[i]);
		sqlite3_bind_int64(s, 2, uid);
		if ((status = exec_stmt(d, s, "deleting a message")) != DB_OK)
			goto fail;
		if (sqlite3_changes(d->handle) == 0)
			continue; /* not this user's: its parts are not ours either */
		if ((s = stmt(d, ST_PART_DELETE)) == NULL)
			goto fail;
		sqlite3_bind_int64(s, 1, ids[i]);
		if ((status = exec_stmt(d, s, "deleting message parts")) != DB_OK)
			goto fail;
	}
	if ((status = commit(d)) != DB_OK)
		goto fail;
	return DB_OK;
fail:
	rollback(d);
	return status == DB_OK ? DB_PERMFAIL : status;
}

static int usage_of(struct db_sqlite *d, int64_t uid, uint64_t *bytes_r)
{
	sqlite3_stmt *s = stmt(d, ST_MSG_USAGE);
	if (s == NULL)
		return DB_PERMFAIL;
	sqlite3_bind_int64(s, 1, uid);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		*bytes_r = (uint64_t)sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	return rc == SQLITE_ROW ? DB_OK : fail(d, rc, "summing message sizes");
}

static int sqlite_msg_usage(struct db *db, int64_t uid, uint64_t *bytes_r)
{
	return usage_of(db_sqlite(db), uid, bytes_r);
}

/* One message in one transaction; uidl NULL for mail delivered here. */
static int store_message(struct db *db, int64_t uid, int64_t quota, const char *header,
			 size_t header_len, const char *body, size_t body_len, uint64_t size,
			 const char *uidl)
{
	struct db_sqlite *d = db_sqlite(db);
	/* a delivered message must survive a power cut once we return OK:
	 * this commit syncs the WAL (and with it every earlier commit) */
	int rc = sqlite3_exec(d->handle, "PRAGMA synchronous = FULL", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return fail(d, rc, "setting synchronous mode");
	int status = begin(d);
	if (status != DB_OK)
		return status;
	if (quota > 0) {
		uint64_t used = 0;
		if ((status = usage_of(d, uid, &used)) != DB_OK)
			goto fail;
		if (used + size > (uint64_t)quota) {
			snprintf(d->error, sizeof d->error,
				 "quota exceeded: %llu bytes stored + %llu > quota %lld",
				 (unsigned long long)used, (unsigned long long)size, (long long)quota);
			status = DB_QUOTA;
			goto fail;
		}
	}
	/* a large body goes into msg_part rows, so that reading any piece
	 * of it later costs one indexed lookup (see read_parts) */
	bool in_parts = body_len > MSG_INLINE_MAX;
	sqlite3_stmt *s = stmt(d, ST_MSG_INSERT);
	if (s == NULL)
		goto fail;
	sqlite3_bind_int64(s, 1, uid);
	sqlite3_bind_blob64(s, 2, header, header_len, SQLITE_STATIC);
	sqlite3_bind_blob64(s, 3, body, in_parts ? 0 : body_len, SQLITE_STATIC);
	sqlite3_bind_int64(s, 4, (int64_t)size);
	if (uidl != NULL)
		sqlite3_bind_text(s, 5, uidl, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, 5);
	status = exec_stmt(d, s, "storing a message");
	sqlite3_clear_bindings(s);
	if (status != DB_OK)
		goto fail;
	int64_t id = sqlite3_last_insert_rowid(d->handle);
	if (uidl != NULL) {
		if ((s = stmt(d, ST_IMPORTED_ADD)) == NULL)
			goto fail;
		sqlite3_bind_int64(s, 1, uid);
		sqlite3_bind_text(s, 2, uidl, -1, SQLITE_STATIC);
		status = exec_stmt(d, s, "recording an imported UIDL");
		sqlite3_clear_bindings(s);
		if (status != DB_OK)
			goto fail;
	}
	for (size_t pos = 0; in_parts && pos * MSG_PART_SIZE < body_len; pos++) {
		size_t off = pos * MSG_PART_SIZE;
		size_t n = body_len - off < MSG_PART_SIZE ? body_len - off : MSG_PART_SIZE;
		if ((s = stmt(d, ST_PART_INSERT)) == NULL)
			goto fail;
		sqlite3_bind_int64(s, 1, id);
		sqlite3_bind_int64(s, 2, (int64_t)pos);
		sqlite3_bind_blob64(s, 3, body + off, n, SQLITE_STATIC);
		status = exec_stmt(d, s, "storing a message part");
		sqlite3_clear_bindings(s);
		if (status != DB_OK)
			goto fail;
	}
	if ((status = commit(d)) != DB_OK)
		goto fail;
	return DB_OK;
fail:
	rollback(d);
	return status == DB_OK ? DB_PERMFAIL : status;
}

static int sqlite_msg_store(struct db *db, int64_t uid, int64_t quota, const char *header,
			    size_t header_len, const char *body, size_t body_len, uint64_t size)
{
	return store_message(db, uid, quota, header, header_len, body, body_len, size, NULL);
}

static int sqlite_msg_import(struct db *db, int64_t uid, const char *header, size_t header_len,
			     const char *body, size_t body_len, uint64_t size, const char *uidl)
{
	return store_message(db, uid, 0, header, header_len, body, body_len, size, uidl);
}

static int sqlite_msg_imported(struct db *db, int64_t uid,
			       void (*each)(const char *uidl, void *ctx), void *ctx)
{
	struct db_sqlite *d = db_sqlite(db);
	sqlite3_stmt *s = stmt(d, ST_IMPORTED_LIST);
	if (s == NULL)
		return DB_PERMFAIL;
	sqlite3_bind_int64(s, 1, uid);
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		each((const char *)sqlite3_column_text(s, 0), ctx);
	sqlite3_reset(s);
	return rc == SQLITE_DONE ? DB_OK : fail(d, rc, "listing imported UIDLs");
}

static const char *sqlite_error(struct db *db)
{
	return db_sqlite(db)->error;
}

const struct db_ops db_sqlite_ops = {
	.name = "sqlite",
	.open = sqlite_open,
	.create = sqlite_create,
	.close = sqlite_close,
	.schema_install = sqlite_schema_install,
	.schema_check = sqlite_schema_check,
	.user_by_login = sqlite_user_by_login,
	.user_by_mail = sqlite_user_by_mail,
	.user_add = sqlite_user_add,
	.user_delete = sqlite_user_delete,
	.user_set_password = sqlite_user_set_password,
	.user_list = sqlite_user_list,
	.user_samples = sqlite_user_samples,
	.salt_key = sqlite_salt_key,
	.lock_acquire = sqlite_lock_acquire,
	.lock_renew = sqlite_lock_renew,
	.lock_release = sqlite_lock_release,
	.msg_list = sqlite_msg_list,
	.msg_read = sqlite_msg_read,
	.msg_delete = sqlite_msg_delete,
	.msg_store = sqlite_msg_store,
	.msg_import = sqlite_msg_import,
	.msg_imported = sqlite_msg_imported,
	.msg_usage = sqlite_msg_usage,
	.error = sqlite_error,
};
