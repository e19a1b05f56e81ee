/* The SQL database on MySQL/MariaDB, through MariaDB Connector/C.
 *
 * Every statement that carries data is a prepared statement (mysql_stmt_*);
 * plain queries are used only for constant text (session setup, START
 * TRANSACTION, the schema's DDL). Message parts are bound and fetched as
 * binary, so no character set conversion touches them.
 *
 * A message is header || body || its msg_part rows. Reading any part of a
 * LONGBLOB makes InnoDB materialise the whole value, so a message streams
 * out with SUBSTRING() pieces of columns that are at most MYSQL_INLINE_MAX
 * long, and a larger message keeps its body in msg_part rows of
 * MYSQL_PART_SIZE, each read for the price of its own size (docs/mysql.md
 * has the measurements). */
#include <errmsg.h>
#include <mysql.h>
#include <mysqld_error.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "metrics.h"
#include "schema_mysql.h"
#include "tpops_limits.h"
#include "xalloc.h"

enum stmt_id {
	ST_USER_BY_LOGIN,
	ST_USER_BY_MAIL,
	ST_USER_ADD,
	ST_USER_DELETE,
	ST_USER_SET_PASSWORD,
	ST_USER_LIST,
	ST_USER_LOCK_ROW,
	ST_LOCK_EXPIRE,
	ST_LOCK_INSERT,
	ST_LOCK_OWNED,
	ST_LOCK_OWNED_FOR_UPDATE,
	ST_LOCK_RENEW,
	ST_LOCK_RELEASE,
	ST_MSG_LIST,
	ST_MSG_LENGTHS,
	ST_MSG_HEADER_PIECE,
	ST_MSG_BODY_PIECE,
	ST_MSG_PARTS,
	ST_MSG_DELETE,
	ST_MSG_PART_DELETE,
	ST_MSG_INSERT,
	ST_MSG_PART_INSERT,
	ST_MSG_USAGE,
	ST_COLUMN_INFO,
	ST_TABLE_ENGINE,
	ST_INDEX_COLUMNS,
	ST_SEED_CHECK,
	ST_SEED_CONVERT,
	ST_COUNT
};

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

static const char *const stmt_sql[ST_COUNT] = {
	[ST_USER_BY_LOGIN] = "SELECT " USER_COLUMNS " FROM `user` WHERE login = ?",
	[ST_USER_BY_MAIL] = "SELECT " USER_COLUMNS " FROM `user` WHERE mail = ?",
	[ST_USER_ADD] = "INSERT INTO `user` (login, passwd, mail, maildir, quota) "
			"VALUES (?, ?, ?, ?, ?)",
	[ST_USER_DELETE] = "DELETE FROM `user` WHERE login = ?",
	[ST_USER_SET_PASSWORD] = "UPDATE `user` SET passwd = ? WHERE login = ?",
	[ST_USER_LIST] = "SELECT " USER_COLUMNS " FROM `user` ORDER BY login",
	[ST_USER_LOCK_ROW] = "SELECT uid FROM `user` WHERE uid = ? FOR UPDATE",
	/* The server's clock, so that every tpops server agrees on expiry. */
	[ST_LOCK_EXPIRE] = "DELETE FROM locks WHERE uid = ? AND expires < UNIX_TIMESTAMP()",
	[ST_LOCK_INSERT] = "INSERT IGNORE INTO locks (uid, owner, expires, timestamp) "
			   "VALUES (?, ?, UNIX_TIMESTAMP() + ?, NOW())",
	[ST_LOCK_OWNED] = "SELECT 1 FROM locks WHERE uid = ? AND owner = ?",
	[ST_LOCK_OWNED_FOR_UPDATE] = "SELECT 1 FROM locks WHERE uid = ? AND owner = ? FOR UPDATE",
	[ST_LOCK_RENEW] = "UPDATE locks SET expires = UNIX_TIMESTAMP() + ? "
			  "WHERE uid = ? AND owner = ?",
	[ST_LOCK_RELEASE] = "DELETE FROM locks WHERE uid = ? AND owner = ?",
	/* LENGTH() of a blob would read every message whole: list only what
	 * the index and the row hold. timestamp + 0 is the seed's UIDL part. */
	[ST_MSG_LIST] = "SELECT id, size, CAST(timestamp + 0 AS CHAR) FROM msg "
			"WHERE uid = ? ORDER BY timestamp, id",
	[ST_MSG_LENGTHS] = "SELECT LENGTH(header), LENGTH(body) FROM msg WHERE id = ?",
	[ST_MSG_HEADER_PIECE] = "SELECT SUBSTRING(header, ?, ?) FROM msg WHERE id = ?",
	[ST_MSG_BODY_PIECE] = "SELECT SUBSTRING(body, ?, ?) FROM msg WHERE id = ?",
	[ST_MSG_PARTS] = "SELECT pos, SUBSTRING(data, GREATEST(? - pos, 0) + 1) FROM msg_part "
			 "WHERE id = ? AND pos > ? AND pos < ? ORDER BY pos",
	[ST_MSG_DELETE] = "DELETE FROM msg WHERE id = ? AND uid = ?",
	[ST_MSG_PART_DELETE] = "DELETE FROM msg_part WHERE id = ?",
	[ST_MSG_INSERT] = "INSERT INTO msg (uid, msgno, timestamp, header, body, size) "
			  "VALUES (?, 0, NOW(), ?, ?, ?)",
	[ST_MSG_PART_INSERT] = "INSERT INTO msg_part (id, pos, data) VALUES (?, ?, ?)",
	[ST_MSG_USAGE] = "SELECT CAST(COALESCE(SUM(size), 0) AS SIGNED) FROM msg WHERE uid = ?",
	[ST_COLUMN_INFO] = "SELECT DATA_TYPE, CAST(COALESCE(CHARACTER_MAXIMUM_LENGTH, 0) AS SIGNED), "
			   "COALESCE(CHARACTER_SET_NAME, ''), COLUMN_DEFAULT IS NOT NULL "
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
	[ST_SEED_CONVERT] = "UPDATE msg SET size = " SEED_WIRE_SIZE ", "
			    "header = CONCAT(REPLACE(header, X'0A', X'0D0A'), X'0D0A'), "
			    "body = REPLACE(body, X'0A', X'0D0A'), tpops_seed_format = 0 "
			    "WHERE tpops_seed_format = 1 LIMIT ?",
};

struct db_mysql {
	struct db db;
	MYSQL *conn;
	MYSQL_STMT *stmts[ST_COUNT];
	/* where to (re)connect */
	char *host, *user, *pass, *dbname, *socket;
	unsigned int port;
	bool broken;         /* the connection was lost: reconnect before use */
	bool op_fresh;       /* this operation made its connection */
	int op_statements;   /* statements this operation has sent */
	/* sizes bounded by the server's max_allowed_packet */
	uint64_t inline_max; /* largest message kept in header and body */
	size_t part_size;    /* msg_part rows written */
	size_t read_max;     /* octets read in one statement */
	/* lengths of the last message read (ids are never reused, and a
	 * stored message never changes) */
	int64_t cached_id;
	uint64_t cached_header_len, cached_body_len;
	char error[512];
};

static struct db_mysql *db_mysql(struct db *db)
{
	return (struct db_mysql *)db;
}

/* Lost connections, timeouts, lock waits, deadlocks, a full disk or a
 * server going down may go away; duplicates are conflicts; anything else
 * (schema, syntax, access) is permanent. */
static int status_of(unsigned int err)
{
	switch (err) {
	case 0:
		return DB_OK;
	case ER_DUP_ENTRY:
	case ER_DUP_ENTRY_WITH_KEY_NAME:
	case ER_DUP_KEY:
		return DB_CONFLICT;
	case ER_LOCK_WAIT_TIMEOUT:
	case ER_LOCK_DEADLOCK:
	case ER_LOCK_TABLE_FULL:
	case ER_CON_COUNT_ERROR:
	case ER_TOO_MANY_USER_CONNECTIONS:
	case ER_OUT_OF_RESOURCES:
	case ER_DISK_FULL:
	case ER_RECORD_FILE_FULL:
	case ER_SERVER_SHUTDOWN:
	case ER_CONNECTION_KILLED:
	case ER_QUERY_INTERRUPTED:
	case ER_STATEMENT_TIMEOUT:
	case ER_OPTION_PREVENTS_STATEMENT: /* read-only during a failover */
	case ER_READ_ONLY_MODE:
	case ER_UNKNOWN_COM_ERROR: /* Galera: node not ready */
	case ER_TOO_MANY_CONCURRENT_TRXS:
	case ER_HOST_IS_BLOCKED:
	case CR_ERR_NET_READ:
	case CR_ERR_NET_WRITE:
		return DB_TEMPFAIL;
	default:
		/* the client library's own errors: no server, lost server,
		 * out of memory, commands out of sync */
		return err >= CR_MIN_ERROR && err <= CR_MAX_ERROR ? DB_TEMPFAIL : DB_PERMFAIL;
	}
}

static bool connection_lost(unsigned int err)
{
	return err == CR_SERVER_GONE_ERROR || err == CR_SERVER_LOST ||
	       err == CR_SERVER_LOST_EXTENDED || err == CR_CONNECTION_ERROR ||
	       err == CR_CONN_HOST_ERROR || err == CR_ERR_NET_READ || err == CR_ERR_NET_WRITE ||
	       err == ER_CONNECTION_KILLED || err == ER_SERVER_SHUTDOWN ||
	       err == CR_COMMANDS_OUT_OF_SYNC;
}

/* The server as the metrics name it: host:port, or the socket. */
static const char *server_label(const struct db_mysql *d, char *buf, size_t len)
{
	if (d->socket != NULL)
		return d->socket;
	snprintf(buf, len, "%s:%u", d->host ? d->host : "localhost", d->port);
	return buf;
}

static int fail_code(struct db_mysql *d, unsigned int err, const char *msg, const char *what)
{
	char label[160];
	if (status_of(err) < 0)
		metrics_db_error(server_label(d, label, sizeof label));
	if (err == ER_NET_PACKET_TOO_LARGE)
		snprintf(d->error, sizeof d->error,
			 "mysql: %s: %s (raise the server's max_allowed_packet)", what, msg);
	else
		snprintf(d->error, sizeof d->error, "mysql: %s: %s", what, msg);
	if (connection_lost(err))
		d->broken = true;
	return status_of(err);
}

static int fail_stmt(struct db_mysql *d, MYSQL_STMT *s, const char *what)
{
	return fail_code(d, mysql_stmt_errno(s), mysql_stmt_error(s), what);
}

static int fail_conn(struct db_mysql *d, const char *what)
{
	return fail_code(d, mysql_errno(d->conn), mysql_error(d->conn), what);
}

/* ---- connection ---- */

static pthread_once_t library_once = PTHREAD_ONCE_INIT;

static void library_init(void)
{
	/* not thread-safe: run once, before any thread's mysql_init() */
	mysql_library_init(0, NULL, NULL);
}

static void close_statements(struct db_mysql *d)
{
	for (int i = 0; i < ST_COUNT; i++) {
		if (d->stmts[i] != NULL)
			mysql_stmt_close(d->stmts[i]);
		d->stmts[i] = NULL;
	}
}

static void disconnect(struct db_mysql *d)
{
	close_statements(d);
	if (d->conn != NULL)
		mysql_close(d->conn);
	d->conn = NULL;
}

static int connect_server(struct db_mysql *d)
{
	pthread_once(&library_once, library_init);
	disconnect(d);
	d->broken = false;
	d->cached_id = 0;
	MYSQL *m = mysql_init(NULL);
	if (m == NULL) {
		snprintf(d->error, sizeof d->error, "mysql: out of memory");
		return DB_TEMPFAIL;
	}
	unsigned int connect_timeout = MYSQL_CONNECT_TIMEOUT, io_timeout = MYSQL_IO_TIMEOUT;
	unsigned long max_packet = 1024UL * 1024 * 1024;
	my_bool no = 0;
	mysql_optionsv(m, MYSQL_OPT_CONNECT_TIMEOUT, &connect_timeout);
	mysql_optionsv(m, MYSQL_OPT_READ_TIMEOUT, &io_timeout);
	mysql_optionsv(m, MYSQL_OPT_WRITE_TIMEOUT, &io_timeout);
	mysql_optionsv(m, MYSQL_OPT_MAX_ALLOWED_PACKET, &max_packet);
	/* a silent reconnect would lose transactions and statements */
	mysql_optionsv(m, MYSQL_OPT_RECONNECT, &no);
	mysql_optionsv(m, MYSQL_SET_CHARSET_NAME, "utf8mb4");
	/* strict: a value that does not fit is an error, not a truncation */
	mysql_optionsv(m, MYSQL_INIT_COMMAND,
		       "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'");
	/* CLIENT_FOUND_ROWS: an UPDATE reports the rows it matched, so that a
	 * lease renewed twice in one second is not taken for a lost one. */
	if (mysql_real_connect(m, d->host, d->user, d->pass, d->dbname, d->port, d->socket,
			       CLIENT_FOUND_ROWS) == NULL) {
		unsigned int err = mysql_errno(m);
		char label[160];
		metrics_db_connect(server_label(d, label, sizeof label), false);
		snprintf(d->error, sizeof d->error, "mysql: cannot connect to %s%s%s: %s",
			 d->socket ? d->socket : d->host ? d->host : "localhost",
			 d->dbname ? " database " : "", d->dbname ? d->dbname : "", mysql_error(m));
		mysql_close(m);
		/* a wrong password or database needs the administrator */
		return err == ER_ACCESS_DENIED_ERROR || err == ER_DBACCESS_DENIED_ERROR ||
				       err == ER_BAD_DB_ERROR
			       ? DB_PERMFAIL
			       : DB_TEMPFAIL;
	}
	d->conn = m;
	char label[160];
	metrics_db_connect(server_label(d, label, sizeof label), true);
	/* Values read or written in one piece must fit in a packet. */
	uint64_t packet = 16 * 1024 * 1024;
	if (mysql_real_query(m, "SELECT @@max_allowed_packet", 27) != 0)
		return fail_conn(d, "reading max_allowed_packet");
	MYSQL_RES *res = mysql_store_result(m);
	MYSQL_ROW row = res ? mysql_fetch_row(res) : NULL;
	if (row != NULL && row[0] != NULL)
		packet = strtoull(row[0], NULL, 10);
	d->inline_max = packet / 2 < MYSQL_INLINE_MAX ? packet / 2 : MYSQL_INLINE_MAX;
	d->part_size = packet / 4 < MYSQL_PART_SIZE ? (size_t)(packet / 4) : MYSQL_PART_SIZE;
	d->read_max = packet / 2 < SIZE_MAX ? (size_t)(packet / 2) : SIZE_MAX;
	mysql_free_result(res);
	return DB_OK;
}

/* Before each operation: reconnect after a lost connection. */
static int ready(struct db_mysql *d)
{
	d->op_statements = 0;
	d->op_fresh = d->conn == NULL || d->broken;
	return d->op_fresh ? connect_server(d) : DB_OK;
}

/* After an operation failed: true when it found its connection dead
 * before it had executed anything but its first statement (the server
 * restarted, or closed an idle connection) and a new connection is up,
 * so that running the operation again is safe. A failed login or delivery
 * then costs nothing; a failure in the middle of an operation is not
 * retried (it may have changed something) and reports DB_TEMPFAIL. */
static bool retry(struct db_mysql *d, int status)
{
	if (status != DB_TEMPFAIL || !d->broken || d->op_fresh || d->op_statements > 1)
		return false;
	if (connect_server(d) != DB_OK)
		return false;
	return true;
}

static char *dup_or_null(const char *s)
{
	return s && *s ? xstrdup(s) : NULL;
}

static int mysql_open(const struct config *cfg, struct db **db_r, char *err, size_t errlen)
{
	struct db_mysql *d = xcalloc(1, sizeof *d);
	d->db.ops = &db_mysql_ops;
	d->host = dup_or_null(cfg->mysql_server);
	d->user = dup_or_null(cfg->mysql_user);
	d->pass = cfg->mysql_pass ? xstrdup(cfg->mysql_pass) : NULL;
	d->dbname = dup_or_null(cfg->mysql_db);
	d->socket = dup_or_null(cfg->mysql_socket);
	d->port = (unsigned int)cfg->mysql_port;
	if (d->dbname == NULL) {
		snprintf(err, errlen, "mysql: MySQL_DB is not set in %s",
			 cfg->path ? cfg->path : "the configuration");
		db_mysql_ops.close(&d->db);
		return DB_PERMFAIL;
	}
	int status = connect_server(d);
	if (status != DB_OK) {
		snprintf(err, errlen, "%s", d->error);
		db_mysql_ops.close(&d->db);
		return status;
	}
	*db_r = &d->db;
	return DB_OK;
}

static void mysql_close_db(struct db *db)
{
	struct db_mysql *d = db_mysql(db);
	disconnect(d);
	free(d->host);
	free(d->user);
	if (d->pass != NULL)
		free_secret(d->pass, strlen(d->pass));
	free(d->dbname);
	free(d->socket);
	free(d);
}

/* ---- statements ---- */

static MYSQL_STMT *stmt(struct db_mysql *d, enum stmt_id id)
{
	if (d->stmts[id] == NULL) {
		MYSQL_STMT *s = mysql_stmt_init(d->conn);
		if (s == NULL) {
			fail_conn(d, "preparing a statement");
			return NULL;
		}
		if (mysql_stmt_prepare(s, stmt_sql[id], (unsigned long)strlen(stmt_sql[id])) != 0) {
			fail_stmt(d, s, "preparing a statement");
			mysql_stmt_close(s);
			return NULL;
		}
		d->stmts[id] = s;
	}
	return d->stmts[id];
}

static void bind_i64(MYSQL_BIND *b, const int64_t *v)
{
	memset(b, 0, sizeof *b);
	b->buffer_type = MYSQL_TYPE_LONGLONG;
	b->buffer = (void *)v;
}

static void bind_text(MYSQL_BIND *b, const char *s, unsigned long *len)
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

static void bind_bytes(MYSQL_BIND *b, const void *p, unsigned long *len)
{
	memset(b, 0, sizeof *b);
	b->buffer_type = MYSQL_TYPE_BLOB;
	b->buffer = (void *)p;
	b->buffer_length = *len;
	b->length = len;
}

/* Result column whose length is learnt first, then fetched with
 * fetch_bytes() (strings and blobs). */
static void bind_out_len(MYSQL_BIND *b, unsigned long *len, my_bool *is_null)
{
	memset(b, 0, sizeof *b);
	b->buffer_type = MYSQL_TYPE_BLOB;
	b->length = len;
	b->is_null = is_null;
}

static void bind_out_i64(MYSQL_BIND *b, int64_t *v, my_bool *is_null)
{
	memset(b, 0, sizeof *b);
	b->buffer_type = MYSQL_TYPE_LONGLONG;
	b->buffer = v;
	b->is_null = is_null;
}

/* Binds the parameters (params may be NULL) and executes. */
static int execute(struct db_mysql *d, MYSQL_STMT *s, MYSQL_BIND *params, const char *what)
{
	if (s == NULL)
		return d->broken ? DB_TEMPFAIL : DB_PERMFAIL;
	if (params != NULL && mysql_stmt_bind_param(s, params) != 0)
		return fail_stmt(d, s, what);
	d->op_statements++;
	if (mysql_stmt_execute(s) != 0)
		return fail_stmt(d, s, what);
	return DB_OK;
}

/* Fetches the next row: DB_OK, DB_NOT_FOUND at the end, or an error. A
 * column bound with bind_out_len() reports truncation, which is expected. */
static int fetch(struct db_mysql *d, MYSQL_STMT *s, MYSQL_BIND *result, const char *what)
{
	if (result != NULL && mysql_stmt_bind_result(s, result) != 0)
		return fail_stmt(d, s, what);
	int rc = mysql_stmt_fetch(s);
	if (rc == 0 || rc == MYSQL_DATA_TRUNCATED)
		return DB_OK;
	if (rc == MYSQL_NO_DATA)
		return DB_NOT_FOUND;
	return fail_stmt(d, s, what);
}

/* Copies up to len octets of column col of the current row from offset. */
static int fetch_bytes(struct db_mysql *d, MYSQL_STMT *s, unsigned int col, unsigned long offset,
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
		return fail_stmt(d, s, what);
	return DB_OK;
}

static char *fetch_text(struct db_mysql *d, MYSQL_STMT *s, unsigned int col, unsigned long len,
			my_bool is_null)
{
	char *text = xmalloc((size_t)len + 1);
	if (is_null || fetch_bytes(d, s, col, 0, text, len, "reading a column") != DB_OK)
		len = 0;
	text[len] = '\0';
	return text;
}

static void done(MYSQL_STMT *s)
{
	if (s != NULL)
		mysql_stmt_free_result(s);
}

/* Runs a statement that returns no rows; *affected_r (may be NULL) gets
 * the rows it changed (matched, for UPDATE). */
static int exec_stmt(struct db_mysql *d, enum stmt_id id, MYSQL_BIND *params, const char *what,
		     uint64_t *affected_r)
{
	MYSQL_STMT *s = stmt(d, id);
	int status = execute(d, s, params, what);
	if (status == DB_OK && affected_r != NULL)
		*affected_r = (uint64_t)mysql_stmt_affected_rows(s);
	return status;
}

/* Runs a query that returns at most one row of one integer. */
static int query_i64(struct db_mysql *d, enum stmt_id id, MYSQL_BIND *params, int64_t *v,
		     const char *what)
{
	MYSQL_STMT *s = stmt(d, id);
	int status = execute(d, s, params, what);
	if (status != DB_OK)
		return status;
	my_bool is_null = 0;
	MYSQL_BIND out;
	bind_out_i64(&out, v, &is_null);
	status = fetch(d, s, &out, what);
	done(s);
	return status;
}

static int plain_query(struct db_mysql *d, const char *sql, const char *what)
{
	d->op_statements++;
	if (mysql_real_query(d->conn, sql, (unsigned long)strlen(sql)) != 0)
		return fail_conn(d, what);
	MYSQL_RES *res = mysql_store_result(d->conn);
	mysql_free_result(res);
	return DB_OK;
}

static int begin(struct db_mysql *d)
{
	return plain_query(d, "START TRANSACTION", "starting a transaction");
}

static int commit(struct db_mysql *d)
{
	d->op_statements++;
	if (mysql_commit(d->conn) != 0)
		return fail_conn(d, "commit");
	return DB_OK;
}

static void rollback(struct db_mysql *d)
{
	if (!d->broken)
		mysql_rollback(d->conn);
}

/* ---- users ---- */

static int user_from_row(struct db_mysql *d, MYSQL_STMT *s, struct user *u)
{
	int64_t uid = 0, quota = 0;
	unsigned long len[6] = {0};
	my_bool is_null[6] = {0};
	MYSQL_BIND out[6];
	bind_out_i64(&out[0], &uid, &is_null[0]);
	for (int i = 1; i <= 4; i++)
		bind_out_len(&out[i], &len[i], &is_null[i]);
	bind_out_i64(&out[5], &quota, &is_null[5]);
	int status = fetch(d, s, out, "reading a user");
	if (status != DB_OK)
		return status;
	u->uid = uid;
	u->login = fetch_text(d, s, 1, len[1], is_null[1]);
	u->passwd = fetch_text(d, s, 2, len[2], is_null[2]);
	u->mail = fetch_text(d, s, 3, len[3], is_null[3]);
	u->maildir = fetch_text(d, s, 4, len[4], is_null[4]);
	u->quota = quota;
	return DB_OK;
}

static int user_lookup(struct db_mysql *d, enum stmt_id id, const char *key, struct user *u)
{
	int status = ready(d);
	if (status != DB_OK)
		return status;
	unsigned long key_len;
	MYSQL_BIND param;
	bind_text(&param, key, &key_len);
	MYSQL_STMT *s = stmt(d, id);
	if ((status = execute(d, s, &param, "looking up a user")) != DB_OK)
		return status;
	status = user_from_row(d, s, u);
	done(s);
	return status;
}

static int user_by_login_once(struct db *db, const char *login, struct user *u)
{
	return user_lookup(db_mysql(db), ST_USER_BY_LOGIN, login, u);
}

static int user_by_mail_once(struct db *db, const char *mail, struct user *u)
{
	return user_lookup(db_mysql(db), ST_USER_BY_MAIL, mail, u);
}

static int mysql_user_add(struct db *db, const struct user *u)
{
	struct db_mysql *d = db_mysql(db);
	int status = ready(d);
	if (status != DB_OK)
		return status;
	unsigned long len[4];
	int64_t quota = u->quota;
	MYSQL_BIND params[5];
	bind_text(&params[0], u->login, &len[0]);
	bind_text(&params[1], u->passwd, &len[1]);
	bind_text(&params[2], u->mail, &len[2]);
	bind_text(&params[3], u->maildir, &len[3]);
	params[1].buffer_type = params[3].buffer_type = MYSQL_TYPE_BLOB;
	bind_i64(&params[4], &quota);
	return exec_stmt(d, ST_USER_ADD, params, "adding a user", NULL);
}

static int changed_one(int status, uint64_t affected)
{
	if (status != DB_OK)
		return status;
	return affected > 0 ? DB_OK : DB_NOT_FOUND;
}

static int mysql_user_delete(struct db *db, const char *login)
{
	struct db_mysql *d = db_mysql(db);
	int status = ready(d);
	if (status != DB_OK)
		return status;
	unsigned long len;
	MYSQL_BIND param;
	bind_text(&param, login, &len);
	uint64_t affected = 0;
	status = exec_stmt(d, ST_USER_DELETE, &param, "deleting a user", &affected);
	return changed_one(status, affected);
}

static int mysql_user_set_password(struct db *db, const char *login, const char *passwd)
{
	struct db_mysql *d = db_mysql(db);
	int status = ready(d);
	if (status != DB_OK)
		return status;
	unsigned long len[2];
	MYSQL_BIND params[2];
	bind_text(&params[0], passwd, &len[0]);
	params[0].buffer_type = MYSQL_TYPE_BLOB;
	bind_text(&params[1], login, &len[1]);
	uint64_t affected = 0;
	status = exec_stmt(d, ST_USER_SET_PASSWORD, params, "changing a password", &affected);
	return changed_one(status, affected);
}

static int user_list_once(struct db *db, void (*each)(const struct user *u, void *ctx), void *ctx)
{
	struct db_mysql *d = db_mysql(db);
	int status = ready(d);
	if (status != DB_OK)
		return status;
	MYSQL_STMT *s = stmt(d, ST_USER_LIST);
	if ((status = execute(d, s, NULL, "listing users")) != DB_OK)
		return status;
	if (mysql_stmt_store_result(s) != 0)
		return fail_stmt(d, s, "listing users");
	for (;;) {
		struct user u = {0};
		status = user_from_row(d, s, &u);
		if (status != DB_OK)
			break;
		each(&u, ctx);
		user_clear(&u);
	}
	done(s);
	return status == DB_NOT_FOUND ? DB_OK : status;
}

/* ---- lease locks ---- */

static int lock_owned(struct db_mysql *d, enum stmt_id id, int64_t uid, const char *owner)
{
	unsigned long len;
	MYSQL_BIND params[2];
	bind_i64(&params[0], &uid);
	bind_text(&params[1], owner, &len);
	int64_t one = 0;
	return query_i64(d, id, params, &one, "checking the lock");
}

static int lock_acquire_once(struct db *db, int64_t uid, const char *owner, int lease)
{
	struct db_mysql *d = db_mysql(db);
	int status = ready(d);
	if (status != DB_OK)
		return status;
	/* An expired lease (a crashed server's, or a seed-era row with no
	 * expiry) is removed; then the insert either takes the free lock or
	 * finds another owner's row. Each statement is atomic on its own. */
	MYSQL_BIND params[3];
	bind_i64(&params[0], &uid);
	if ((status = exec_stmt(d, ST_LOCK_EXPIRE, params, "expiring a lock", NULL)) != DB_OK)
		return status;
	unsigned long len;
	int64_t lease64 = lease;
	bind_text(&params[1], owner, &len);
	bind_i64(&params[2], &lease64);
	uint64_t inserted = 0;
	status = exec_stmt(d, ST_LOCK_INSERT, params, "taking a lock", &inserted);
	if (status != DB_OK)
		return status;
	if (inserted > 0)
		return DB_OK;
	/* ours already (a retried acquire) or another owner's */
	status = lock_owned(d, ST_LOCK_OWNED, uid, owner);
	return status == DB_NOT_FOUND ? DB_CONFLICT : status;
}

static int lock_renew_once(struct db *db, int64_t uid, const char *owner, int lease)
{
	struct db_mysql *d = db_mysql(db);
	int status = ready(d);
	if (status != DB_OK)
		return status;
	unsigned long len;
	int64_t lease64 = lease;
	MYSQL_BIND params[3];
	bind_i64(&params[0], &lease64);
	bind_i64(&params[1], &uid);
	bind_text(&params[2], owner, &len);
	uint64_t matched = 0;
	status = exec_stmt(d, ST_LOCK_RENEW, params, "renewing a lock", &matched);
	return changed_one(status, matched);
}

static int lock_release_once(struct db *db, int64_t uid, const char *owner)
{
	struct db_mysql *d = db_mysql(db);
	int status = ready(d);
	if (status != DB_OK)
		return status;
	unsigned long len;
	MYSQL_BIND params[2];
	bind_i64(&params[0], &uid);
	bind_text(&params[1], owner, &len);
	uint64_t affected = 0;
	status = exec_stmt(d, ST_LOCK_RELEASE, params, "releasing a lock", &affected);
	return changed_one(status, affected);
}

/* ---- messages ---- */

static int msg_list_once(struct db *db, int64_t uid, struct db_msg **msgs_r, size_t *count_r)
{
	struct db_mysql *d = db_mysql(db);
	int status = ready(d);
	if (status != DB_OK)
		return status;
	MYSQL_BIND param;
	bind_i64(&param, &uid);
	MYSQL_STMT *s = stmt(d, ST_MSG_LIST);
	if ((status = execute(d, s, &param, "listing messages")) != DB_OK)
		return status;
	int64_t id = 0, size = 0;
	char stamp[32];
	unsigned long stamp_len = 0;
	my_bool is_null[3] = {0};
	MYSQL_BIND out[3];
	bind_out_i64(&out[0], &id, &is_null[0]);
	bind_out_i64(&out[1], &size, &is_null[1]);
	memset(&out[2], 0, sizeof out[2]);
	out[2].buffer_type = MYSQL_TYPE_STRING;
	out[2].buffer = stamp;
	out[2].buffer_length = sizeof stamp;
	out[2].length = &stamp_len;
	out[2].is_null = &is_null[2];
	if (mysql_stmt_bind_result(s, out) != 0) {
		status = fail_stmt(d, s, "listing messages");
		done(s);
		return status;
	}
	size_t count = 0, cap = 16;
	struct db_msg *msgs = xmalloc(cap * sizeof *msgs);
	while ((status = fetch(d, s, NULL, "listing messages")) == DB_OK) {
		if (count == cap) {
			cap *= 2;
			msgs = xrealloc(msgs, cap * sizeof *msgs);
		}
		struct db_msg *m = &msgs[count++];
		m->id = id;
		m->size = (uint64_t)size;
		/* LENGTH() would read every message whole; nothing above
		 * the interface needs the stored octet count */
		m->raw_size = (uint64_t)size;
		/* timestamp + 0: 14 digits, or "0" for a zero date */
		size_t n = is_null[2] ? 0 : stamp_len < sizeof m->timestamp ? stamp_len : sizeof m->timestamp - 1;
		memcpy(m->timestamp, stamp, n);
		m->timestamp[n] = '\0';
	}
	done(s);
	if (status != DB_NOT_FOUND) {
		free(msgs);
		return status;
	}
	*msgs_r = msgs;
	*count_r = count;
	return DB_OK;
}

static int message_lengths(struct db_mysql *d, int64_t id)
{
	if (d->cached_id == id && id != 0)
		return DB_OK;
	MYSQL_BIND param;
	bind_i64(&param, &id);
	MYSQL_STMT *s = stmt(d, ST_MSG_LENGTHS);
	int status = execute(d, s, &param, "reading a message");
	if (status != DB_OK)
		return status;
	int64_t header_len = 0, body_len = 0;
	my_bool is_null[2] = {0};
	MYSQL_BIND out[2];
	bind_out_i64(&out[0], &header_len, &is_null[0]);
	bind_out_i64(&out[1], &body_len, &is_null[1]);
	status = fetch(d, s, out, "reading a message");
	done(s);
	if (status == DB_NOT_FOUND)
		snprintf(d->error, sizeof d->error, "message %lld is gone", (long long)id);
	if (status != DB_OK)
		return status;
	d->cached_id = id;
	d->cached_header_len = (uint64_t)header_len;
	d->cached_body_len = (uint64_t)body_len;
	return DB_OK;
}

/* Reads exactly len octets of header or body from offset. */
static int read_column_piece(struct db_mysql *d, enum stmt_id id, int64_t msg_id, uint64_t offset,
			     char *buf, size_t len)
{
	int64_t position = (int64_t)offset + 1, length = (int64_t)len;
	MYSQL_BIND params[3];
	bind_i64(&params[0], &position);
	bind_i64(&params[1], &length);
	bind_i64(&params[2], &msg_id);
	MYSQL_STMT *s = stmt(d, id);
	int status = execute(d, s, params, "reading a message");
	if (status != DB_OK)
		return status;
	unsigned long got = 0;
	my_bool is_null = 0;
	MYSQL_BIND out;
	bind_out_len(&out, &got, &is_null);
	status = fetch(d, s, &out, "reading a message");
	if (status == DB_OK && got != len) {
		snprintf(d->error, sizeof d->error, "message %lld changed while read",
			 (long long)msg_id);
		status = DB_NOT_FOUND;
	}
	if (status == DB_OK)
		status = fetch_bytes(d, s, 0, 0, buf, (unsigned long)len, "reading a message");
	done(s);
	if (status == DB_NOT_FOUND && d->error[0] == '\0')
		snprintf(d->error, sizeof d->error, "message %lld is gone", (long long)msg_id);
	return status;
}

/* Reads up to len octets from offset of the msg_part rows of a message. */
static int read_parts(struct db_mysql *d, int64_t msg_id, uint64_t offset, char *buf, size_t len,
		      size_t *got_r)
{
	int64_t from = (int64_t)offset, lower = from - MYSQL_PART_MAX, upper = from + (int64_t)len;
	MYSQL_BIND params[4];
	bind_i64(&params[0], &from);
	bind_i64(&params[1], &msg_id);
	bind_i64(&params[2], &lower);
	bind_i64(&params[3], &upper);
	MYSQL_STMT *s = stmt(d, ST_MSG_PARTS);
	int status = execute(d, s, params, "reading a message");
	if (status != DB_OK)
		return status;
	int64_t pos = 0;
	unsigned long data_len = 0;
	my_bool is_null[2] = {0};
	MYSQL_BIND out[2];
	bind_out_i64(&out[0], &pos, &is_null[0]);
	bind_out_len(&out[1], &data_len, &is_null[1]);
	if (mysql_stmt_bind_result(s, out) != 0) {
		status = fail_stmt(d, s, "reading a message");
		done(s);
		return status;
	}
	size_t got = 0;
	while (got < len && (status = fetch(d, s, NULL, "reading a message")) == DB_OK) {
		if (data_len == 0) /* a part that ends before offset */
			continue;
		/* the pieces must follow each other without a gap */
		uint64_t start = (uint64_t)pos > offset ? (uint64_t)pos : offset;
		if (start != offset + got) {
			snprintf(d->error, sizeof d->error,
				 "message %lld: msg_part rows leave a gap at %llu", (long long)msg_id,
				 (unsigned long long)(offset + got));
			status = DB_PERMFAIL;
			break;
		}
		size_t n = data_len < len - got ? data_len : len - got;
		status = fetch_bytes(d, s, 1, 0, buf + got, (unsigned long)n, "reading a message");
		if (status != DB_OK)
			break;
		got += n;
	}
	done(s);
	if (status != DB_OK && status != DB_NOT_FOUND)
		return status;
	*got_r = got;
	return DB_OK;
}

static int msg_read_once(struct db *db, int64_t id, uint64_t offset, void *buf, size_t len,
			 size_t *got_r)
{
	struct db_mysql *d = db_mysql(db);
	d->error[0] = '\0';
	int status = ready(d);
	if (status != DB_OK || (status = message_lengths(d, id)) != DB_OK)
		return status;
	if (len > d->read_max) /* a reply must fit in a packet */
		len = d->read_max;
	uint64_t header_len = d->cached_header_len;
	uint64_t columns_len = header_len + d->cached_body_len;
	char *out = buf;
	size_t got = 0;
	if (offset < header_len) {
		size_t n = header_len - offset < len ? (size_t)(header_len - offset) : len;
		status = read_column_piece(d, ST_MSG_HEADER_PIECE, id, offset, out, n);
		if (status != DB_OK)
			return status;
		got += n;
	}
	uint64_t at = offset + got;
	if (got < len && at < columns_len) {
		size_t n = columns_len - at < len - got ? (size_t)(columns_len - at) : len - got;
		status = read_column_piece(d, ST_MSG_BODY_PIECE, id, at - header_len, out + got, n);
		if (status != DB_OK)
			return status;
		got += n;
	}
	at = offset + got;
	if (got < len) {
		size_t more = 0;
		status = read_parts(d, id, at - columns_len, out + got, len - got, &more);
		if (status != DB_OK)
			return status;
		got += more;
	}
	*got_r = got;
	return DB_OK;
}

static int msg_delete_once(struct db *db, int64_t uid, const char *owner, const int64_t *ids,
			   size_t count)
{
	struct db_mysql *d = db_mysql(db);
	int status = ready(d);
	if (status != DB_OK || (status = begin(d)) != DB_OK)
		return status;
	/* FOR UPDATE: the lease cannot expire and pass to another server
	 * between this check and the commit. */
	status = lock_owned(d, ST_LOCK_OWNED_FOR_UPDATE, uid, owner);
	if (status == DB_NOT_FOUND) { /* the lease was lost: someone else may hold it */
		snprintf(d->error, sizeof d->error, "the maildrop lock was lost");
		goto fail;
	}
	if (status != DB_OK)
		goto fail;
	for (size_t i = 0; i < count; i++) {
		int64_t id = ids[i];
		MYSQL_BIND params[2];
		bind_i64(&params[0], &id);
		bind_i64(&params[1], &uid);
		uint64_t deleted = 0;
		status = exec_stmt(d, ST_MSG_DELETE, params, "deleting a message", &deleted);
		if (status == DB_OK && deleted > 0)
			status = exec_stmt(d, ST_MSG_PART_DELETE, params, "deleting a message", NULL);
		if (status != DB_OK)
			goto fail;
		if (d->cached_id == id)
			d->cached_id = 0;
	}
	if ((status = commit(d)) != DB_OK)
		goto fail;
	return DB_OK;
fail:
	rollback(d);
	return status;
}

static int usage_of(struct db_mysql *d, int64_t uid, uint64_t *bytes_r)
{
	MYSQL_BIND param;
	bind_i64(&param, &uid);
	int64_t used = 0;
	int status = query_i64(d, ST_MSG_USAGE, &param, &used, "summing message sizes");
	if (status == DB_NOT_FOUND)
		status = DB_OK;
	*bytes_r = (uint64_t)used;
	return status;
}

static int msg_usage_once(struct db *db, int64_t uid, uint64_t *bytes_r)
{
	struct db_mysql *d = db_mysql(db);
	int status = ready(d);
	return status == DB_OK ? usage_of(d, uid, bytes_r) : status;
}

/* Binds a column value; a long one is sent in pieces once the parameters
 * are bound (send_long_values), so that no second copy of it is made. */
static void bind_value(MYSQL_BIND *b, const void *p, size_t len, unsigned long *len_out)
{
	*len_out = (unsigned long)len;
	bind_bytes(b, len > MYSQL_LONG_DATA_PIECE ? NULL : p, len_out);
	if (len > MYSQL_LONG_DATA_PIECE) {
		b->buffer_type = MYSQL_TYPE_LONG_BLOB;
		b->buffer_length = 0;
	}
}

static int send_long_value(struct db_mysql *d, MYSQL_STMT *s, unsigned int param, const char *p,
			   size_t len)
{
	if (len <= MYSQL_LONG_DATA_PIECE)
		return DB_OK;
	for (size_t at = 0; at < len; at += MYSQL_LONG_DATA_PIECE) {
		size_t n = len - at < MYSQL_LONG_DATA_PIECE ? len - at : MYSQL_LONG_DATA_PIECE;
		if (mysql_stmt_send_long_data(s, param, p + at, (unsigned long)n) != 0)
			return fail_stmt(d, s, "storing a message");
	}
	return DB_OK;
}

/* The octets a large message keeps in msg_part: up to two pieces. */
struct spill {
	const char *p[2];
	size_t n[2];
};

static int store_parts(struct db_mysql *d, int64_t id, const struct spill *sp)
{
	size_t total = sp->n[0] + sp->n[1];
	char *seam = NULL; /* for the one part that straddles both pieces */
	int status = DB_OK;
	size_t part = d->part_size;
	for (size_t at = 0; at < total && status == DB_OK; at += part) {
		size_t n = total - at < part ? total - at : part;
		const char *data;
		if (at + n <= sp->n[0]) {
			data = sp->p[0] + at;
		} else if (at >= sp->n[0]) {
			data = sp->p[1] + (at - sp->n[0]);
		} else {
			if (seam == NULL)
				seam = xmalloc(part);
			size_t first = sp->n[0] - at;
			memcpy(seam, sp->p[0] + at, first);
			memcpy(seam + first, sp->p[1], n - first);
			data = seam;
		}
		int64_t pos = (int64_t)at;
		unsigned long data_len = (unsigned long)n;
		MYSQL_BIND params[3];
		bind_i64(&params[0], &id);
		bind_i64(&params[1], &pos);
		bind_bytes(&params[2], data, &data_len);
		status = exec_stmt(d, ST_MSG_PART_INSERT, params, "storing a message", NULL);
	}
	free(seam);
	return status;
}

static int msg_store_once(struct db *db, int64_t uid, int64_t quota, const char *header,
			  size_t header_len, const char *body, size_t body_len, uint64_t size)
{
	struct db_mysql *d = db_mysql(db);
	MYSQL_STMT *s = NULL;
	int status = ready(d);
	if (status != DB_OK || (status = begin(d)) != DB_OK)
		return status;
	if (quota > 0) {
		/* The user's row lock serialises concurrent deliveries, so
		 * that two of them cannot both fit under the quota. */
		MYSQL_BIND param;
		bind_i64(&param, &uid);
		int64_t locked_uid = 0;
		status = query_i64(d, ST_USER_LOCK_ROW, &param, &locked_uid, "locking the user");
		if (status == DB_NOT_FOUND) {
			snprintf(d->error, sizeof d->error, "user %lld is gone", (long long)uid);
			goto fail;
		}
		uint64_t used = 0;
		if (status != DB_OK || (status = usage_of(d, uid, &used)) != DB_OK)
			goto fail;
		if (used + size > (uint64_t)quota) {
			snprintf(d->error, sizeof d->error,
				 "quota exceeded: %llu bytes stored + %llu > quota %lld",
				 (unsigned long long)used, (unsigned long long)size, (long long)quota);
			status = DB_QUOTA;
			goto fail;
		}
	}
	/* A message that fits is kept in header and body, as the seed kept
	 * it; a larger one keeps its header there (when that fits) and the
	 * rest in msg_part. */
	struct spill sp = {{NULL, NULL}, {0, 0}};
	const char *h = header, *b = body;
	size_t hl = header_len, bl = body_len;
	if (header_len + body_len > d->inline_max) {
		if (header_len <= d->inline_max) {
			sp = (struct spill){{body, NULL}, {body_len, 0}};
			b = "";
			bl = 0;
		} else {
			sp = (struct spill){{header, body}, {header_len, body_len}};
			h = b = "";
			hl = bl = 0;
		}
	}
	int64_t uid64 = uid, size64 = (int64_t)size;
	unsigned long lens[2];
	MYSQL_BIND params[4];
	bind_i64(&params[0], &uid64);
	bind_value(&params[1], h, hl, &lens[0]);
	bind_value(&params[2], b, bl, &lens[1]);
	bind_i64(&params[3], &size64);
	s = stmt(d, ST_MSG_INSERT);
	if (s == NULL) {
		status = d->broken ? DB_TEMPFAIL : DB_PERMFAIL;
		goto fail;
	}
	if (mysql_stmt_bind_param(s, params) != 0) {
		status = fail_stmt(d, s, "storing a message");
		goto fail;
	}
	bool long_data = hl > MYSQL_LONG_DATA_PIECE || bl > MYSQL_LONG_DATA_PIECE;
	if ((status = send_long_value(d, s, 1, h, hl)) != DB_OK ||
	    (status = send_long_value(d, s, 2, b, bl)) != DB_OK)
		goto fail;
	d->op_statements++;
	if (mysql_stmt_execute(s) != 0) {
		status = fail_stmt(d, s, "storing a message");
		goto fail;
	}
	int64_t id = (int64_t)mysql_stmt_insert_id(s);
	if (long_data)
		mysql_stmt_reset(s); /* forget the long data for the next use */
	if (sp.n[0] + sp.n[1] > 0 && (status = store_parts(d, id, &sp)) != DB_OK)
		goto fail;
	if ((status = commit(d)) != DB_OK)
		goto fail;
	return DB_OK;
fail:
	if (s != NULL && !d->broken)
		mysql_stmt_reset(s);
	rollback(d);
	return status;
}

/* ---- schema: creation and the upgrade of a seed-era database ---- */

struct column {
	bool exists;
	char type[32];   /* DATA_TYPE: "varchar", "mediumtext", "longblob"... */
	int64_t length;  /* CHARACTER_MAXIMUM_LENGTH */
	char charset[32];
	bool has_default;
};

static int column_info(struct db_mysql *d, const char *table, const char *name, struct column *c)
{
	*c = (struct column){0};
	unsigned long lens[2];
	MYSQL_BIND params[2];
	bind_text(&params[0], table, &lens[0]);
	bind_text(&params[1], name, &lens[1]);
	MYSQL_STMT *s = stmt(d, ST_COLUMN_INFO);
	int status = execute(d, s, params, "reading the schema");
	if (status != DB_OK)
		return status;
	unsigned long type_len = 0, charset_len = 0;
	int64_t has_default = 0;
	my_bool is_null[4] = {0};
	MYSQL_BIND out[4];
	memset(out, 0, sizeof out);
	out[0].buffer_type = MYSQL_TYPE_STRING;
	out[0].buffer = c->type;
	out[0].buffer_length = sizeof c->type - 1;
	out[0].length = &type_len;
	out[0].is_null = &is_null[0];
	bind_out_i64(&out[1], &c->length, &is_null[1]);
	out[2].buffer_type = MYSQL_TYPE_STRING;
	out[2].buffer = c->charset;
	out[2].buffer_length = sizeof c->charset - 1;
	out[2].length = &charset_len;
	out[2].is_null = &is_null[2];
	bind_out_i64(&out[3], &has_default, &is_null[3]);
	status = fetch(d, s, out, "reading the schema");
	done(s);
	if (status == DB_NOT_FOUND)
		return DB_OK;
	if (status != DB_OK)
		return status;
	c->exists = true;
	c->type[type_len < sizeof c->type ? type_len : sizeof c->type - 1] = '\0';
	c->charset[charset_len < sizeof c->charset ? charset_len : sizeof c->charset - 1] = '\0';
	c->has_default = has_default != 0;
	return DB_OK;
}

static int text_query(struct db_mysql *d, enum stmt_id id, const char *a, const char *b, char *out,
		      size_t outlen)
{
	unsigned long lens[2], got = 0;
	MYSQL_BIND params[2];
	bind_text(&params[0], a, &lens[0]);
	if (b != NULL)
		bind_text(&params[1], b, &lens[1]);
	MYSQL_STMT *s = stmt(d, id);
	int status = execute(d, s, params, "reading the schema");
	if (status != DB_OK)
		return status;
	my_bool is_null = 0;
	MYSQL_BIND res;
	memset(&res, 0, sizeof res);
	res.buffer_type = MYSQL_TYPE_STRING;
	res.buffer = out;
	res.buffer_length = (unsigned long)outlen - 1;
	res.length = &got;
	res.is_null = &is_null;
	status = fetch(d, s, &res, "reading the schema");
	done(s);
	if (status == DB_NOT_FOUND || (status == DB_OK && is_null))
		got = 0;
	out[got < outlen ? got : outlen - 1] = '\0';
	return status == DB_NOT_FOUND ? DB_OK : status;
}

static bool is_text_type(const char *type)
{
	static const char *const text[] = {"char", "varchar", "tinytext", "text", "mediumtext",
					   "longtext"};
	for (size_t i = 0; i < sizeof text / sizeof text[0]; i++)
		if (strcmp(type, text[i]) == 0)
			return true;
	return false;
}

/* A column that is missing, of another type, narrower than `length`, or
 * (with charset) in another character set. */
static bool column_differs(const struct column *c, const char *type, int64_t length,
			   const char *charset)
{
	return !c->exists || strcmp(c->type, type) != 0 || c->length < length ||
	       (charset != NULL && strcmp(c->charset, charset) != 0);
}

struct alter {
	char sql[2048];
	size_t clauses;
};

static void alter_add(struct alter *a, const char *clause)
{
	size_t len = strlen(a->sql);
	snprintf(a->sql + len, sizeof a->sql - len, "%s%s", a->clauses++ ? ", " : " ", clause);
}

static int alter_run(struct db_mysql *d, struct alter *a, const char *what)
{
	if (a->clauses == 0)
		return DB_OK;
	return plain_query(d, a->sql, what);
}

static int upgrade_user(struct db_mysql *d)
{
	struct column login, passwd, mail, maildir, quota;
	char engine[64];
	int status;
	if ((status = text_query(d, ST_TABLE_ENGINE, "user", NULL, engine, sizeof engine)) != DB_OK ||
	    (status = column_info(d, "user", "login", &login)) != DB_OK ||
	    (status = column_info(d, "user", "passwd", &passwd)) != DB_OK ||
	    (status = column_info(d, "user", "mail", &mail)) != DB_OK ||
	    (status = column_info(d, "user", "maildir", &maildir)) != DB_OK ||
	    (status = column_info(d, "user", "quota", &quota)) != DB_OK)
		return status;
	struct alter a = {"ALTER TABLE `user`", 0};
	if (strcmp(engine, "InnoDB") != 0)
		alter_add(&a, "ENGINE=InnoDB");
	/* latin1 text becomes the same text in utf8mb4 (seed logins and
	 * addresses are ASCII); passwords and paths stay the same octets */
	if (column_differs(&login, "varchar", 255, "utf8mb4"))
		alter_add(&a, "MODIFY login VARCHAR(255) CHARACTER SET utf8mb4 NOT NULL");
	if (column_differs(&passwd, "varbinary", 255, NULL))
		alter_add(&a, "MODIFY passwd VARBINARY(255) NOT NULL");
	if (column_differs(&mail, "varchar", 255, "utf8mb4"))
		alter_add(&a, "MODIFY mail VARCHAR(255) CHARACTER SET utf8mb4 NOT NULL");
	if (column_differs(&maildir, "varbinary", 1024, NULL) || !maildir.has_default)
		alter_add(&a, "MODIFY maildir VARBINARY(1024) NOT NULL DEFAULT ''");
	if (column_differs(&quota, "bigint", 0, NULL) || !quota.has_default)
		alter_add(&a, "MODIFY quota BIGINT NOT NULL DEFAULT 0");
	if (a.clauses > 0)
		alter_add(&a, "DEFAULT CHARACTER SET utf8mb4");
	return alter_run(d, &a, "upgrading table user");
}

/* Before anything changes: the conversion rewrites each message in one
 * REPLACE(), whose result must fit in the server's max_allowed_packet. */
static int check_seed_rows(struct db_mysql *d)
{
	int64_t max_value = 0, failing = 0, packet = 0;
	MYSQL_STMT *s = stmt(d, ST_SEED_CHECK);
	int status = execute(d, s, NULL, "checking seed-era messages");
	if (status != DB_OK)
		return status;
	my_bool is_null[3] = {0};
	MYSQL_BIND out[3];
	bind_out_i64(&out[0], &max_value, &is_null[0]);
	bind_out_i64(&out[1], &failing, &is_null[1]);
	bind_out_i64(&out[2], &packet, &is_null[2]);
	status = fetch(d, s, out, "checking seed-era messages");
	done(s);
	if (status != DB_OK && status != DB_NOT_FOUND)
		return status;
	if (failing > 0 || max_value > packet) {
		snprintf(d->error, sizeof d->error,
			 "mysql: converting the seed-era messages needs a larger max_allowed_packet "
			 "than %lld (%s): raise it on the server (SET GLOBAL max_allowed_packet = "
			 "1073741824) and run tpops-dbinit again; nothing was changed",
			 (long long)packet,
			 failing > 0 ? "some messages are larger than it"
				     : "a converted message would be larger");
		return DB_PERMFAIL;
	}
	return DB_OK;
}

/* Converts the seed-era rows, a batch per transaction; each row is marked
 * done in the same update, so an interrupted run resumes where it
 * stopped and converts no row twice. */
static int convert_seed_rows(struct db_mysql *d)
{
	for (;;) {
		int64_t batch = MYSQL_UPGRADE_BATCH;
		MYSQL_BIND param;
		bind_i64(&param, &batch);
		uint64_t converted = 0;
		int status = exec_stmt(d, ST_SEED_CONVERT, &param, "converting seed-era messages",
				       &converted);
		if (status != DB_OK)
			return status;
		if (converted == 0)
			return DB_OK;
	}
}

static int upgrade_msg(struct db_mysql *d)
{
	struct column id, msgno, header, body, size, marker;
	char engine[64], arrival[128], seed_index[128];
	int status;
	if ((status = text_query(d, ST_TABLE_ENGINE, "msg", NULL, engine, sizeof engine)) != DB_OK ||
	    (status = text_query(d, ST_INDEX_COLUMNS, "msg", "msg_arrival", arrival,
				 sizeof arrival)) != DB_OK ||
	    (status = text_query(d, ST_INDEX_COLUMNS, "msg", "uid", seed_index,
				 sizeof seed_index)) != DB_OK ||
	    (status = column_info(d, "msg", "id", &id)) != DB_OK ||
	    (status = column_info(d, "msg", "msgno", &msgno)) != DB_OK ||
	    (status = column_info(d, "msg", "header", &header)) != DB_OK ||
	    (status = column_info(d, "msg", "body", &body)) != DB_OK ||
	    (status = column_info(d, "msg", "size", &size)) != DB_OK ||
	    (status = column_info(d, "msg", "tpops_seed_format", &marker)) != DB_OK)
		return status;
	/* Seed-era rows are in text columns. TEXT -> BLOB keeps the octets
	 * as they are (no character set conversion), whatever they hold. The
	 * timestamp column is never touched: the UIDLs are made from it. */
	bool seed = is_text_type(header.type);
	if (seed && (status = check_seed_rows(d)) != DB_OK)
		return status;
	struct alter a = {"ALTER TABLE msg", 0};
	if (strcmp(engine, "InnoDB") != 0)
		alter_add(&a, "ENGINE=InnoDB");
	if (column_differs(&id, "bigint", 0, NULL))
		alter_add(&a, "MODIFY id BIGINT NOT NULL AUTO_INCREMENT");
	if (!msgno.exists)
		alter_add(&a, "ADD COLUMN msgno INT NOT NULL DEFAULT 0 AFTER uid");
	else if (!msgno.has_default) /* strict mode refuses an insert without it */
		alter_add(&a, "MODIFY msgno INT NOT NULL DEFAULT 0");
	if (column_differs(&header, "longblob", 0, NULL))
		alter_add(&a, "MODIFY header LONGBLOB NOT NULL");
	if (column_differs(&body, "longblob", 0, NULL))
		alter_add(&a, "MODIFY body LONGBLOB NOT NULL");
	if (column_differs(&size, "bigint", 0, NULL))
		alter_add(&a, "MODIFY size BIGINT NOT NULL");
	if (strcmp(arrival, "uid,timestamp,id") != 0) {
		if (arrival[0] != '\0')
			alter_add(&a, "DROP INDEX msg_arrival");
		alter_add(&a, "ADD INDEX msg_arrival (uid, timestamp, id)");
	}
	if (strcmp(seed_index, "uid") == 0) /* the seed's index (uid): covered now */
		alter_add(&a, "DROP INDEX `uid`");
	if (seed && !marker.exists)
		alter_add(&a, "ADD COLUMN tpops_seed_format TINYINT NOT NULL DEFAULT 1");
	if ((status = alter_run(d, &a, "upgrading table msg")) != DB_OK)
		return status;
	if (seed || marker.exists) {
		/* rows stored from now on are not seed-era rows */
		if ((status = plain_query(d, "ALTER TABLE msg ALTER COLUMN tpops_seed_format "
					     "SET DEFAULT 0",
					  "upgrading table msg")) != DB_OK ||
		    (status = convert_seed_rows(d)) != DB_OK ||
		    (status = plain_query(d, "ALTER TABLE msg DROP COLUMN tpops_seed_format",
					  "upgrading table msg")) != DB_OK)
			return status;
	}
	return DB_OK;
}

static int upgrade_locks(struct db_mysql *d)
{
	struct column owner, expires, pid, stamp;
	char engine[64];
	int status;
	if ((status = text_query(d, ST_TABLE_ENGINE, "locks", NULL, engine, sizeof engine)) !=
		    DB_OK ||
	    (status = column_info(d, "locks", "owner", &owner)) != DB_OK ||
	    (status = column_info(d, "locks", "expires", &expires)) != DB_OK ||
	    (status = column_info(d, "locks", "pid", &pid)) != DB_OK ||
	    (status = column_info(d, "locks", "timestamp", &stamp)) != DB_OK)
		return status;
	struct alter a = {"ALTER TABLE locks", 0};
	if (strcmp(engine, "InnoDB") != 0)
		alter_add(&a, "ENGINE=InnoDB");
	/* a seed-era row gets expires 0: expired, so free */
	if (!owner.exists)
		alter_add(&a, "ADD COLUMN owner VARCHAR(255) CHARACTER SET utf8mb4 NOT NULL DEFAULT ''");
	if (!expires.exists)
		alter_add(&a, "ADD COLUMN expires BIGINT NOT NULL DEFAULT 0");
	if (pid.exists && !pid.has_default) /* sql.txt of 2002 had pid */
		alter_add(&a, "MODIFY pid INT NOT NULL DEFAULT 0");
	if (stamp.exists && !stamp.has_default)
		alter_add(&a, "MODIFY timestamp TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP");
	return alter_run(d, &a, "upgrading table locks");
}

/* Runs the statements of sql/mysql.sql one by one (each ends with ';' at
 * the end of a line). */
static int create_tables(struct db_mysql *d)
{
	const char *p = schema_mysql_sql;
	char *statement = xmalloc(strlen(p) + 1);
	size_t len = 0;
	int status = DB_OK;
	while (*p != '\0' && status == DB_OK) {
		const char *eol = strchr(p, '\n');
		size_t n = eol ? (size_t)(eol - p) : strlen(p);
		const char *line = p;
		p += n + (eol != NULL);
		while (n > 0 && (line[n - 1] == ' ' || line[n - 1] == '\t' || line[n - 1] == '\r'))
			n--;
		if (n == 0 || strncmp(line, "--", 2) == 0)
			continue;
		memcpy(statement + len, line, n);
		len += n;
		if (line[n - 1] == ';') {
			statement[len - 1] = '\0';
			status = plain_query(d, statement, "creating the schema");
			len = 0;
		} else {
			statement[len++] = '\n';
		}
	}
	free(statement);
	return status;
}

static int mysql_schema_install(struct db *db)
{
	struct db_mysql *d = db_mysql(db);
	int status = ready(d);
	if (status != DB_OK || (status = create_tables(d)) != DB_OK ||
	    (status = upgrade_user(d)) != DB_OK || (status = upgrade_msg(d)) != DB_OK ||
	    (status = upgrade_locks(d)) != DB_OK)
		return status;
	/* statements prepared before the upgrade describe the old tables */
	close_statements(d);
	d->cached_id = 0;
	return DB_OK;
}

/* ---- operations that may run again on a new connection ---- */

static int mysql_user_by_login(struct db *db, const char *login, struct user *u)
{
	int status = user_by_login_once(db, login, u);
	if (retry(db_mysql(db), status))
		status = user_by_login_once(db, login, u);
	return status;
}

static int mysql_user_by_mail(struct db *db, const char *mail, struct user *u)
{
	int status = user_by_mail_once(db, mail, u);
	if (retry(db_mysql(db), status))
		status = user_by_mail_once(db, mail, u);
	return status;
}

static int mysql_user_list(struct db *db, void (*each)(const struct user *u, void *ctx), void *ctx)
{
	int status = user_list_once(db, each, ctx);
	if (retry(db_mysql(db), status))
		status = user_list_once(db, each, ctx);
	return status;
}

static int mysql_lock_acquire(struct db *db, int64_t uid, const char *owner, int lease)
{
	int status = lock_acquire_once(db, uid, owner, lease);
	if (retry(db_mysql(db), status))
		status = lock_acquire_once(db, uid, owner, lease);
	return status;
}

static int mysql_lock_renew(struct db *db, int64_t uid, const char *owner, int lease)
{
	int status = lock_renew_once(db, uid, owner, lease);
	if (retry(db_mysql(db), status))
		status = lock_renew_once(db, uid, owner, lease);
	return status;
}

static int mysql_lock_release(struct db *db, int64_t uid, const char *owner)
{
	int status = lock_release_once(db, uid, owner);
	if (retry(db_mysql(db), status))
		status = lock_release_once(db, uid, owner);
	return status;
}

static int mysql_msg_list(struct db *db, int64_t uid, struct db_msg **msgs_r, size_t *count_r)
{
	int status = msg_list_once(db, uid, msgs_r, count_r);
	if (retry(db_mysql(db), status))
		status = msg_list_once(db, uid, msgs_r, count_r);
	return status;
}

/* Fills buf unless the message ends first (the db.h contract): a reply
 * holds at most read_max octets, so a small max_allowed_packet takes
 * several statements. */
static int mysql_msg_read(struct db *db, int64_t id, uint64_t offset, void *buf, size_t len,
			  size_t *got_r)
{
	struct db_mysql *d = db_mysql(db);
	size_t got = 0;
	while (got < len) {
		size_t want = len - got, n = 0;
		int status = msg_read_once(db, id, offset + got, (char *)buf + got, want, &n);
		if (retry(d, status))
			status = msg_read_once(db, id, offset + got, (char *)buf + got, want, &n);
		if (status != DB_OK)
			return status;
		got += n;
		/* less than one statement returns (read_max as it was set by
		 * the connection that read): the message ended */
		if (n < (want < d->read_max ? want : d->read_max))
			break;
	}
	*got_r = got;
	return DB_OK;
}

static int mysql_msg_delete(struct db *db, int64_t uid, const char *owner, const int64_t *ids,
			    size_t count)
{
	int status = msg_delete_once(db, uid, owner, ids, count);
	if (retry(db_mysql(db), status))
		status = msg_delete_once(db, uid, owner, ids, count);
	return status;
}

static int mysql_msg_store(struct db *db, int64_t uid, int64_t quota, const char *header,
			   size_t header_len, const char *body, size_t body_len, uint64_t size)
{
	int status = msg_store_once(db, uid, quota, header, header_len, body, body_len, size);
	if (retry(db_mysql(db), status))
		status = msg_store_once(db, uid, quota, header, header_len, body, body_len, size);
	return status;
}

static int mysql_msg_usage(struct db *db, int64_t uid, uint64_t *bytes_r)
{
	int status = msg_usage_once(db, uid, bytes_r);
	if (retry(db_mysql(db), status))
		status = msg_usage_once(db, uid, bytes_r);
	return status;
}

static const char *mysql_error_text(struct db *db)
{
	return db_mysql(db)->error;
}

const struct db_ops db_mysql_ops = {
	.name = "mysql",
	.open = mysql_open,
	.close = mysql_close_db,
	.schema_install = mysql_schema_install,
	.user_by_login = mysql_user_by_login,
	.user_by_mail = mysql_user_by_mail,
	.user_add = mysql_user_add,
	.user_delete = mysql_user_delete,
	.user_set_password = mysql_user_set_password,
	.user_list = mysql_user_list,
	.lock_acquire = mysql_lock_acquire,
	.lock_renew = mysql_lock_renew,
	.lock_release = mysql_lock_release,
	.msg_list = mysql_msg_list,
	.msg_read = mysql_msg_read,
	.msg_delete = mysql_msg_delete,
	.msg_store = mysql_msg_store,
	.msg_usage = mysql_msg_usage,
	.error = mysql_error_text,
};
