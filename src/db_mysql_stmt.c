/* The MySQL engine's statements: the SQL of every prepared statement, and
 * the helpers that prepare, bind, run and fetch them.
 *
 * Every statement that carries data is a prepared statement (mysql_stmt_*);
 * plain queries are used only for constant text (session setup, START
 * TRANSACTION, the schema's DDL). Message parts are bound and fetched as
 * binary, so no character set conversion touches them. */
#include <assert.h>
#include <mysql.h>
#include <stdio.h>
#include <string.h>

#include "db_mysql.h"
#include "xalloc.h"

#define USER_COLUMNS "uid, login, passwd, mail, maildir, quota"
/* A seed-era message: header without the empty line, body after it, LF
 * line ends; the original server sent header.gsub(LF, CRLF) + CRLF +
 * body.gsub(LF, CRLF) (docs/mysql.md). The conversion stores exactly those
 * octets, and size becomes what the output filter makes of them (a CRLF
 * more when the last line has no line end). size comes first: it is
 * computed from the old values whichever way the server orders SET. */
#define SEED_WIRE_SIZE                                                                       \
	"2 * LENGTH(header) - LENGTH(REPLACE(header, X'0A', '')) + 2"                         \
	" + 2 * LENGTH(body) - LENGTH(REPLACE(body, X'0A', ''))"                              \
	" + IF(LENGTH(body) > 0 AND RIGHT(body, 1) <> X'0A', 2, 0)"

#define CONFLICTS_SQL(column)                                                                  \
	"SELECT GROUP_CONCAT(g SEPARATOR '; ') FROM (SELECT GROUP_CONCAT(CONCAT('\"', "        \
	"CONVERT(" column " USING utf8mb4), '\" (uid ', uid, ')') ORDER BY uid SEPARATOR ', ') " \
	"AS g FROM `user` GROUP BY CONVERT(" column " USING utf8mb4) HAVING COUNT(*) > 1 "      \
	"LIMIT 5) AS conflicts"
static const char *const stmt_sql[ST_COUNT] = {
	[ST_USER_BY_LOGIN] = "SELECT " USER_COLUMNS " FROM `user` WHERE login = ?",
	[ST_USER_BY_MAIL] = "SELECT " USER_COLUMNS " FROM `user` WHERE mail = ?",
	[ST_USER_ADD] = "INSERT INTO `user` (login, passwd, mail, maildir, quota) "
			"VALUES (?, ?, ?, ?, ?)",
	[ST_USER_DELETE] = "DELETE FROM `user` WHERE login = ?",
	[ST_USER_SET_PASSWORD] = "UPDATE `user` SET passwd = ? WHERE login = ?",
	[ST_USER_LIST] = "SELECT " USER_COLUMNS " FROM `user` ORDER BY login",
	[ST_SECRET_GET] = "SELECT value FROM tpops_secret WHERE name = ?",
	[ST_SECRET_ADD] = "INSERT IGNORE INTO tpops_secret (name, value) VALUES (?, ?)",
	/* the newest user of each password scheme prefix */
	[ST_USER_SAMPLES] = "SELECT " USER_COLUMNS " FROM `user` WHERE uid IN "
			    "(SELECT MAX(uid) FROM `user` WHERE passwd LIKE '{%' OR passwd LIKE '$%' "
			    "GROUP BY CASE WHEN passwd LIKE '{%' "
			    "THEN SUBSTR(passwd, 1, INSTR(passwd, '}')) "
			    "ELSE SUBSTR(passwd, 1, 4) END)",
	/* Galera certifies writes, not SELECT ... FOR UPDATE: a delivery
	 * under a quota writes the user's row (and puts it back before
	 * COMMIT), so that two deliveries on two nodes conflict, and one
	 * runs again and sees the other's message. A single UPDATE that sets
	 * the same value would change no row and certify nothing; negating a
	 * quota (> 0 here) always changes it and cannot overflow. Each half
	 * changes only a row in the state the other leaves: were the claim
	 * lost, the unclaim changes no row and the delivery fails, and a
	 * quota is never left negated. */
	[ST_USER_CLAIM] = "UPDATE `user` SET quota = -quota WHERE uid = ? AND quota > 0",
	[ST_USER_UNCLAIM] = "UPDATE `user` SET quota = -quota WHERE uid = ? AND quota < 0",
	/* tpops-dbinit: a quota that an earlier tpops left negated (a claim
	 * committed without its release: docs/mysql.md, Galera) */
	[ST_QUOTA_RESTORE] = "UPDATE `user` SET quota = -quota WHERE quota < 0",
	/* The server's clock, so that every tpops server agrees on expiry. */
	[ST_LOCK_EXPIRE] = "DELETE FROM locks WHERE uid = ? AND expires < UNIX_TIMESTAMP()",
	[ST_LOCK_INSERT] = "INSERT IGNORE INTO locks (uid, owner, expires, timestamp) "
			   "VALUES (?, ?, UNIX_TIMESTAMP() + ?, NOW())",
	[ST_LOCK_OWNED] = "SELECT 1 FROM locks WHERE uid = ? AND owner = ?",
	/* QUIT's ownership check, a write for Galera to certify: a server
	 * that took the expired lease meanwhile on another node conflicts
	 * with it. It negates expires (> 0 for a live lease) until
	 * ST_LOCK_CONFIRM, the transaction's last statement, turns it back
	 * and adds a second (QUIT releases the lease next): that one finds
	 * the row only while the claim is in effect, in the same transaction,
	 * as with a user's quota. */
	[ST_LOCK_CLAIM] = "UPDATE locks SET expires = -expires WHERE uid = ? AND owner = ? "
			  "AND expires > 0",
	[ST_LOCK_CONFIRM] = "UPDATE locks SET expires = 1 - expires WHERE uid = ? AND owner = ? "
			    "AND expires < 0",
	[ST_LOCK_RENEW] = "UPDATE locks SET expires = UNIX_TIMESTAMP() + ? "
			  "WHERE uid = ? AND owner = ?",
	[ST_LOCK_RELEASE] = "DELETE FROM locks WHERE uid = ? AND owner = ?",
	/* LENGTH() of a blob would read every message whole: list only what
	 * the index and the row hold. timestamp + 0 is the seed's UIDL part. */
	[ST_MSG_LIST] = "SELECT id, size, CAST(timestamp + 0 AS CHAR), uidl FROM msg "
			"WHERE uid = ? ORDER BY timestamp, id",
	/* A piece of header || body from offset ? (0-based) of at most ?
	 * octets, the two lengths, and whether msg_part rows follow: one
	 * round trip reads a message that is not stored in parts. */
	[ST_MSG_PIECE] = "SELECT LENGTH(header), LENGTH(body), SUBSTRING(header, ? + 1, ?), "
			 "SUBSTRING(body, GREATEST(? - LENGTH(header), 0) + 1, "
			 "? - LEAST(GREATEST(LENGTH(header) - ?, 0), ?)), "
			 "EXISTS (SELECT 1 FROM msg_part WHERE msg_part.id = msg.id) "
			 "FROM msg WHERE id = ?",
	[ST_MSG_PARTS] = "SELECT pos, SUBSTRING(data, GREATEST(? - pos, 0) + 1) FROM msg_part "
			 "WHERE id = ? AND pos > ? AND pos < ? ORDER BY pos",
	[ST_MSG_DELETE] = "DELETE FROM msg WHERE id = ? AND uid = ?",
	[ST_MSG_PART_DELETE] = "DELETE FROM msg_part WHERE id = ?",
	[ST_MSG_INSERT] = "INSERT INTO msg (uid, msgno, timestamp, header, body, size, uidl) "
			  "VALUES (?, 0, NOW(), ?, ?, ?, ?)",
	[ST_MSG_PART_INSERT] = "INSERT INTO msg_part (id, pos, data) VALUES (?, ?, ?)",
	[ST_MSG_USAGE] = "SELECT CAST(COALESCE(SUM(size), 0) AS SIGNED) FROM msg WHERE uid = ?",
	[ST_MSG_EXISTS] = "SELECT 1 FROM msg WHERE id = ?",
	[ST_IMPORTED_ADD] = "INSERT IGNORE INTO msg_imported (uid, uidl) VALUES (?, ?)",
	[ST_IMPORTED_LIST] = "SELECT uidl FROM msg_imported WHERE uid = ?",
	/* the character set, with "/cs" when the collation tells letter case
	 * apart (a _bin or _cs one): the login rule needs one that does not */
	[ST_COLUMN_INFO] = "SELECT DATA_TYPE, CAST(COALESCE(CHARACTER_MAXIMUM_LENGTH, 0) AS SIGNED), "
			   "CONCAT(COALESCE(CHARACTER_SET_NAME, ''), "
			   "IF(COLLATION_NAME LIKE '%\\_bin' OR COLLATION_NAME LIKE '%\\_cs', "
			   "'/cs', '')), COLUMN_DEFAULT IS NOT NULL "
			   "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
			   "AND TABLE_NAME = ? AND COLUMN_NAME = ?",
	[ST_TABLE_ENGINE] = "SELECT COALESCE(ENGINE, '') FROM information_schema.TABLES "
			    "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?",
	[ST_INDEX_COLUMNS] = "SELECT GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX) "
			     "FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() "
			     "AND TABLE_NAME = ? AND INDEX_NAME = ?",
	/* The largest value the seed conversion makes, and whether any
	 * REPLACE() already fails (NULL) for want of max_allowed_packet. */
	[ST_SEED_CHECK] = "SELECT CAST(COALESCE(MAX(GREATEST("
			  "2 * LENGTH(header) - LENGTH(REPLACE(header, X'0A', '')) + 2, "
			  "2 * LENGTH(body) - LENGTH(REPLACE(body, X'0A', '')))), 0) AS SIGNED), "
			  "CAST(COALESCE(SUM(REPLACE(header, X'0A', '') IS NULL "
			  "OR REPLACE(body, X'0A', '') IS NULL), 0) AS SIGNED), "
			  "CAST(@@max_allowed_packet AS SIGNED) FROM msg",
	/* Users that the case-insensitive unique keys of the upgraded
	 * columns (utf8mb4's default collation) make one: up to 5 groups */
	[ST_LOGIN_CONFLICTS] = CONFLICTS_SQL("login"),
	[ST_MAIL_CONFLICTS] = CONFLICTS_SQL("mail"),
	[ST_SEED_CONVERT] = "UPDATE msg SET size = " SEED_WIRE_SIZE ", "
			    "header = CONCAT(REPLACE(header, X'0A', X'0D0A'), X'0D0A'), "
			    "body = REPLACE(body, X'0A', X'0D0A'), tpops_seed_format = 0 "
			    "WHERE tpops_seed_format = 1 LIMIT ?",
};

/* Reads (and writes) that must see every commit of the cluster, also one
 * made through another Galera node a moment ago: wsrep_sync_wait's mask
 * (1 reads, 2 UPDATE and DELETE, 4 INSERT) for the statement alone. The
 * listing at login follows a delivery through another node; the lock
 * statements decide who holds a maildrop. */
static const int stmt_sync_wait[ST_COUNT] = {
	[ST_MSG_LIST] = 1,
	[ST_MSG_USAGE] = 1,
	[ST_LOCK_INSERT] = 4,
	[ST_LOCK_OWNED] = 1,
	[ST_LOCK_CLAIM] = 2,
};

MYSQL_STMT *dbm_stmt(struct db_mysql *d, enum stmt_id id)
{
	if (d->stmts[id] == NULL) {
		/* Galera: a statement prepared inside an aborted transaction
		 * was seen to run outside it (dbm_begin) */
		assert(!d->in_txn && "a transaction's statements are prepared by dbm_begin");
		MYSQL_STMT *s = mysql_stmt_init(d->conn);
		if (s == NULL) {
			dbm_fail_conn(d, "preparing a statement");
			return NULL;
		}
		/* only on Galera: MySQL has no such variable */
		int wait = d->galera ? stmt_sync_wait[id] : 0;
		char sql[4096];
		if (wait != 0)
			snprintf(sql, sizeof sql, "SET STATEMENT wsrep_sync_wait = %d FOR %s", wait,
				 stmt_sql[id]);
		else
			snprintf(sql, sizeof sql, "%s", stmt_sql[id]);
		if (mysql_stmt_prepare(s, sql, (unsigned long)strlen(sql)) != 0) {
			dbm_fail_stmt(d, s, "preparing a statement");
			mysql_stmt_close(s);
			return NULL;
		}
		d->stmts[id] = s;
	}
	return d->stmts[id];
}

void dbm_bind_i64(MYSQL_BIND *b, const int64_t *v)
{
	memset(b, 0, sizeof *b);
	b->buffer_type = MYSQL_TYPE_LONGLONG;
	b->buffer = (void *)v;
}

void dbm_bind_text(MYSQL_BIND *b, const char *s, unsigned long *len)
{
	memset(b, 0, sizeof *b);
	if (s == NULL)
		s = "";
	*len = (unsigned long)strlen(s);
	b->buffer_type = MYSQL_TYPE_STRING;
	b->buffer = (void *)s;
	b->buffer_length = *len;
	b->length = len;
}

void dbm_bind_bytes(MYSQL_BIND *b, const void *p, unsigned long *len)
{
	memset(b, 0, sizeof *b);
	b->buffer_type = MYSQL_TYPE_BLOB;
	b->buffer = (void *)p;
	b->buffer_length = *len;
	b->length = len;
}

/* Result column whose length is learnt first, then fetched with
 * dbm_fetch_bytes() (strings and blobs). */
void dbm_bind_out_len(MYSQL_BIND *b, unsigned long *len, my_bool *is_null)
{
	memset(b, 0, sizeof *b);
	b->buffer_type = MYSQL_TYPE_BLOB;
	b->length = len;
	b->is_null = is_null;
}

void dbm_bind_out_i64(MYSQL_BIND *b, int64_t *v, my_bool *is_null)
{
	memset(b, 0, sizeof *b);
	b->buffer_type = MYSQL_TYPE_LONGLONG;
	b->buffer = v;
	b->is_null = is_null;
}

/* Binds the parameters (params may be NULL) and executes. */
int dbm_execute(struct db_mysql *d, MYSQL_STMT *s, MYSQL_BIND *params, const char *what)
{
	if (s == NULL)
		return d->broken ? DB_TEMPFAIL : DB_PERMFAIL;
	if (params != NULL && mysql_stmt_bind_param(s, params) != 0)
		return dbm_fail_stmt(d, s, what);
	if (mysql_stmt_execute(s) != 0)
		return dbm_fail_stmt(d, s, what);
	return DB_OK;
}

/* Fetches the next row: DB_OK, DB_NOT_FOUND at the end, or an error. A
 * column bound with dbm_bind_out_len() reports truncation, which is expected. */
int dbm_fetch(struct db_mysql *d, MYSQL_STMT *s, MYSQL_BIND *result, const char *what)
{
	if (result != NULL && mysql_stmt_bind_result(s, result) != 0)
		return dbm_fail_stmt(d, s, what);
	int rc = mysql_stmt_fetch(s);
	if (rc == 0 || rc == MYSQL_DATA_TRUNCATED)
		return DB_OK;
	if (rc == MYSQL_NO_DATA)
		return DB_NOT_FOUND;
	return dbm_fail_stmt(d, s, what);
}

/* Copies up to len octets of column col of the current row from offset. */
int dbm_fetch_bytes(struct db_mysql *d, MYSQL_STMT *s, unsigned int col, unsigned long offset,
		       void *buf, unsigned long len, const char *what)
{
	if (len == 0)
		return DB_OK;
	unsigned long got = 0;
	MYSQL_BIND b;
	memset(&b, 0, sizeof b);
	b.buffer_type = MYSQL_TYPE_BLOB;
	b.buffer = buf;
	b.buffer_length = len;
	b.length = &got;
	if (mysql_stmt_fetch_column(s, &b, col, offset) != 0)
		return dbm_fail_stmt(d, s, what);
	return DB_OK;
}

char *dbm_fetch_text(struct db_mysql *d, MYSQL_STMT *s, unsigned int col, unsigned long len,
			my_bool is_null)
{
	char *text = xmalloc((size_t)len + 1);
	if (is_null || dbm_fetch_bytes(d, s, col, 0, text, len, "reading a column") != DB_OK)
		len = 0;
	text[len] = '\0';
	return text;
}

void dbm_done(MYSQL_STMT *s)
{
	if (s != NULL)
		mysql_stmt_free_result(s);
}

/* Runs a statement that returns no rows; *affected_r (may be NULL) gets
 * the rows it changed (matched, for UPDATE). */
int dbm_exec_stmt(struct db_mysql *d, enum stmt_id id, MYSQL_BIND *params, const char *what,
		     uint64_t *affected_r)
{
	MYSQL_STMT *s = dbm_stmt(d, id);
	int status = dbm_execute(d, s, params, what);
	if (status == DB_OK && affected_r != NULL)
		*affected_r = (uint64_t)mysql_stmt_affected_rows(s);
	return status;
}

/* Runs a query that returns at most one row of one integer. */
int dbm_query_i64(struct db_mysql *d, enum stmt_id id, MYSQL_BIND *params, int64_t *v,
		     const char *what)
{
	MYSQL_STMT *s = dbm_stmt(d, id);
	int status = dbm_execute(d, s, params, what);
	if (status != DB_OK)
		return status;
	my_bool is_null = 0;
	MYSQL_BIND out;
	dbm_bind_out_i64(&out, v, &is_null);
	status = dbm_fetch(d, s, &out, what);
	dbm_done(s);
	return status;
}

int dbm_plain_query(struct db_mysql *d, const char *sql, const char *what)
{
	if (mysql_real_query(d->conn, sql, (unsigned long)strlen(sql)) != 0)
		return dbm_fail_conn(d, what);
	MYSQL_RES *res = mysql_store_result(d->conn);
	mysql_free_result(res);
	return DB_OK;
}

/* Autocommit back on once the transaction has ended. Where that fails,
 * the connection is dropped (a new one starts with it on); the
 * transaction's outcome stands. */
static void autocommit_on(struct db_mysql *d)
{
	if (d->autocommit_off && !d->broken && mysql_autocommit(d->conn, 1) != 0)
		d->broken = true;
	d->autocommit_off = false;
}

/* A transaction runs with autocommit off. On Galera a write through
 * another node can abort it; the server rolls it back and is to report
 * that with the next statement's error. That error has been seen lost:
 * the statements after it then ran by themselves, each committed at once
 * (a delivery stored without its quota check, a quota left negated).
 * With autocommit off such statements start a new transaction instead,
 * which commits only at our COMMIT, and each transaction checks there that
 * it is still the one it began (msg_store_once, msg_delete_once). Its
 * statements are prepared before it starts: a statement prepared inside
 * an aborted transaction was seen to run outside it without the error. */
int dbm_begin(struct db_mysql *d, const enum stmt_id *uses, size_t count)
{
	/* nothing here commits anything: a connection lost meanwhile leaves
	 * no doubt, and the operation may run again on the next host */
	d->starting_txn = true;
	int status = DB_OK;
	for (size_t i = 0; i < count && status == DB_OK; i++)
		if (dbm_stmt(d, uses[i]) == NULL)
			status = d->broken ? DB_TEMPFAIL : DB_PERMFAIL;
	if (status == DB_OK && mysql_autocommit(d->conn, 0) != 0)
		status = dbm_fail_conn(d, "starting a transaction");
	if (status == DB_OK) {
		d->autocommit_off = true;
		status = dbm_plain_query(d, "START TRANSACTION", "starting a transaction");
		d->in_txn = status == DB_OK;
		if (status != DB_OK)
			autocommit_on(d);
	}
	d->starting_txn = false;
	return status;
}

/* A connection lost here leaves the outcome unknown (db_mysql_retry.c). */
int dbm_commit(struct db_mysql *d)
{
	d->committing = true;
	int status = mysql_commit(d->conn) != 0 ? dbm_fail_conn(d, "commit") : DB_OK;
	d->committing = false;
	if (status == DB_OK) {
		d->in_txn = false;
		autocommit_on(d);
	}
	return status;
}

void dbm_rollback(struct db_mysql *d)
{
	if (!d->broken)
		mysql_rollback(d->conn);
	d->in_txn = false;
	autocommit_on(d);
}

int dbm_changed_one(int status, uint64_t affected)
{
	if (status != DB_OK)
		return status;
	return affected > 0 ? DB_OK : DB_NOT_FOUND;
}
