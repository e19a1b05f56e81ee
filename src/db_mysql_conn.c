/* The MySQL engine's connection: connecting (and reconnecting after a lost
 * connection), how a server error maps to a db_status, and when an
 * operation may run again. */
#include <errmsg.h>
#include <mysql.h>
#include <mysqld_error.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_mysql.h"
#include "metrics.h"
#include "tpops_limits.h"
#include "xalloc.h"

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

int dbm_fail_stmt(struct db_mysql *d, MYSQL_STMT *s, const char *what)
{
	return fail_code(d, mysql_stmt_errno(s), mysql_stmt_error(s), what);
}

int dbm_fail_conn(struct db_mysql *d, const char *what)
{
	return fail_code(d, mysql_errno(d->conn), mysql_error(d->conn), what);
}

static pthread_once_t library_once = PTHREAD_ONCE_INIT;

static void library_init(void)
{
	/* not thread-safe: run once, before any thread's mysql_init() */
	mysql_library_init(0, NULL, NULL);
}

void dbm_close_statements(struct db_mysql *d)
{
	for (int i = 0; i < ST_COUNT; i++) {
		if (d->stmts[i] != NULL)
			mysql_stmt_close(d->stmts[i]);
		d->stmts[i] = NULL;
	}
}

static void disconnect(struct db_mysql *d)
{
	dbm_close_statements(d);
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
		return dbm_fail_conn(d, "reading max_allowed_packet");
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
int dbm_ready(struct db_mysql *d)
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
bool dbm_retry(struct db_mysql *d, int status)
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

int mysql_open(const struct config *cfg, struct db **db_r, char *err, size_t errlen)
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

void mysql_close_db(struct db *db)
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

const char *mysql_error_text(struct db *db)
{
	return db_mysql(db)->error;
}
