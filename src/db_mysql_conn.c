/* The MySQL engine's connection: one of the MySQL_Server hosts, in order
 * of preference. A connection goes to the first host that answers and is
 * ready (a Galera node that left the primary component answers, but is
 * not); after a node failure (db_mysql_retry.c) the next connection starts
 * at the host after the failed one. A connection on any host but the first
 * moves back to the first at its next operation after SIGHUP
 * (db_mysql_failback()) or once MySQL_FailbackTime has passed since it
 * was made: an idle worker moves at its next use, not before. */
#include <errmsg.h>
#include <mysql.h>
#include <mysqld_error.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "db_mysql.h"
#include "log.h"
#include "metrics.h"
#include "tpops_limits.h"
#include "xalloc.h"

static pthread_once_t library_once = PTHREAD_ONCE_INIT;

/* bumped by SIGHUP; each connection compares it with the one it saw */
static atomic_uint failback_generation;

void db_mysql_failback(void)
{
	atomic_fetch_add(&failback_generation, 1);
}

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

/* never 0, which stands for "not connected yet" */
static int64_t monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	int64_t ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	return ms > 0 ? ms : 1;
}

static const char *host_name(const struct db_mysql *d, size_t i)
{
	return d->socket && (d->hosts.host[i].name == NULL ||
			     strcmp(d->hosts.host[i].name, "localhost") == 0)
		       ? d->socket
	       : d->hosts.host[i].name ? d->hosts.host[i].name
					: "localhost";
}

/* The server as the metrics name it: host:port, or the socket. */
const char *dbm_server_label(const struct db_mysql *d, size_t i, char *buf, size_t len)
{
	const struct mysql_host *h = &d->hosts.host[i < d->hosts.count ? i : 0];
	if (d->socket != NULL && (h->name == NULL || strcmp(h->name, "localhost") == 0))
		return d->socket;
	snprintf(buf, len, "%s:%u", h->name ? h->name : "localhost", h->port);
	return buf;
}

/* A one-row, one-column answer of a constant query; "" when it has none. */
static int query_value(struct db_mysql *d, const char *sql, char *out, size_t outlen,
		       const char *what)
{
	out[0] = '\0';
	if (mysql_real_query(d->conn, sql, (unsigned long)strlen(sql)) != 0)
		return dbm_fail_conn(d, what);
	MYSQL_RES *res = mysql_store_result(d->conn);
	MYSQL_ROW row = res ? mysql_fetch_row(res) : NULL;
	unsigned int columns = res ? mysql_num_fields(res) : 0;
	if (row != NULL && columns > 0 && row[columns - 1] != NULL)
		snprintf(out, outlen, "%s", row[columns - 1]);
	mysql_free_result(res);
	return DB_OK;
}

/* After the connection is up: the packet size, and whether this is a
 * Galera node, and a ready one. */
static int setup_session(struct db_mysql *d, size_t i)
{
	char value[64];
	int status = query_value(d, "SHOW GLOBAL VARIABLES LIKE 'wsrep_on'", value, sizeof value,
				 "asking for Galera");
	if (status != DB_OK)
		return status;
	d->galera = strcmp(value, "ON") == 0;
	if (d->galera) {
		status = query_value(d, "SHOW GLOBAL STATUS LIKE 'wsrep_ready'", value,
				     sizeof value, "asking whether the Galera node is ready");
		if (status != DB_OK)
			return status;
		if (strcmp(value, "ON") != 0) {
			snprintf(d->error, sizeof d->error,
				 "mysql: %s:%u: the Galera node is not ready (wsrep_ready %s)",
				 host_name(d, i), d->hosts.host[i].port, value[0] ? value : "unset");
			d->last_err = ER_UNKNOWN_COM_ERROR;
			return DB_TEMPFAIL;
		}
	}
	/* Values read or written in one piece must fit in a packet. */
	status = query_value(d, "SELECT @@max_allowed_packet", value, sizeof value,
			     "reading max_allowed_packet");
	if (status != DB_OK)
		return status;
	uint64_t packet = value[0] ? strtoull(value, NULL, 10) : 16 * 1024 * 1024;
	d->inline_max = packet / 2 < MYSQL_INLINE_MAX ? packet / 2 : MYSQL_INLINE_MAX;
	d->part_size = packet / 4 < MYSQL_PART_SIZE ? (size_t)(packet / 4) : MYSQL_PART_SIZE;
	d->read_max = packet / 2 < SIZE_MAX ? (size_t)(packet / 2) : SIZE_MAX;
	return DB_OK;
}

static int connect_host(struct db_mysql *d, size_t i)
{
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
	const struct mysql_host *h = &d->hosts.host[i];
	if (mysql_real_connect(m, h->name, d->user, d->pass, d->dbname, h->port, d->socket,
			       CLIENT_FOUND_ROWS) == NULL) {
		unsigned int err = mysql_errno(m);
		char label[160];
		metrics_db_connect(dbm_server_label(d, i, label, sizeof label), false);
		snprintf(d->error, sizeof d->error, "mysql: cannot connect to %s:%u%s%s: %s",
			 host_name(d, i), h->port, d->dbname ? " database " : "",
			 d->dbname ? d->dbname : "", mysql_error(m));
		mysql_close(m);
		d->last_err = err;
		/* a wrong password or database needs the administrator */
		return err == ER_ACCESS_DENIED_ERROR || err == ER_DBACCESS_DENIED_ERROR ||
				       err == ER_BAD_DB_ERROR
			       ? DB_PERMFAIL
			       : DB_TEMPFAIL;
	}
	d->conn = m;
	char label[160];
	metrics_db_connect(dbm_server_label(d, i, label, sizeof label), true);
	int status = setup_session(d, i);
	if (status != DB_OK)
		disconnect(d);
	return status;
}

/* Connects to the first host, from d->next_host on, that answers and is
 * ready. A permanent failure (access denied) stops the search: every host
 * of one cluster has the same users. */
static int connect_server(struct db_mysql *d)
{
	pthread_once(&library_once, library_init);
	disconnect(d);
	d->broken = false;
	d->autocommit_off = false;
	d->cached_id = 0;
	int status = DB_TEMPFAIL;
	for (size_t n = 0; n < d->hosts.count; n++) {
		size_t i = (d->next_host + n) % d->hosts.count;
		status = connect_host(d, i);
		if (status == DB_OK) {
			if (i != d->host_at && d->hosts.count > 1 && d->connected_ms != 0)
				log_warn("mysql: now using %s:%u", host_name(d, i),
					 d->hosts.host[i].port);
			d->host_at = i;
			d->next_host = i;
			d->connected_ms = monotonic_ms();
			d->generation = atomic_load(&failback_generation);
			return DB_OK;
		}
		if (status == DB_PERMFAIL)
			return status;
		if (d->hosts.count > 1)
			log_warn("%s", d->error);
	}
	return status;
}

void dbm_drop_host(struct db_mysql *d)
{
	disconnect(d);
	d->broken = true;
	d->next_host = (d->host_at + 1) % d->hosts.count;
}

/* A connection on a host other than the first: is it time to move back? */
static bool failback_due(const struct db_mysql *d)
{
	if (d->host_at == 0)
		return false;
	if (atomic_load(&failback_generation) != d->generation)
		return true; /* SIGHUP */
	return d->failback_ms > 0 && monotonic_ms() - d->connected_ms >= d->failback_ms;
}

/* Before each attempt of an operation: reconnect after a lost connection,
 * and move back to the first host when it is time to. A first host that
 * is still down costs one connection attempt, and the search goes on
 * from it to the others; the time then counts again from the new
 * connection. */
int dbm_ready(struct db_mysql *d)
{
	if (d->conn != NULL && !d->broken && failback_due(d)) {
		d->next_host = 0;
		disconnect(d);
	}
	if (d->conn != NULL && !d->broken)
		return DB_OK;
	return connect_server(d);
}

static char *dup_or_null(const char *s)
{
	return s && *s ? xstrdup(s) : NULL;
}

int mysql_open(const struct config *cfg, struct db **db_r, char *err, size_t errlen)
{
	struct db_mysql *d = xcalloc(1, sizeof *d);
	d->db.ops = &db_mysql_ops;
	d->user = dup_or_null(cfg->mysql_user);
	d->pass = cfg->mysql_pass ? xstrdup(cfg->mysql_pass) : NULL;
	d->dbname = dup_or_null(cfg->mysql_db);
	d->socket = dup_or_null(cfg->mysql_socket);
	d->random = ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid() ^ (uint64_t)(uintptr_t)d;
	d->random |= 1;
	d->failback_ms = (int64_t)cfg->mysql_failback_time * 1000;
	if (d->dbname == NULL) {
		snprintf(err, errlen, "mysql: MySQL_DB is not set in %s",
			 cfg->path ? cfg->path : "the configuration");
		db_mysql_ops.close(&d->db);
		return DB_PERMFAIL;
	}
	if (mysql_hosts_parse(cfg->mysql_server, (unsigned int)cfg->mysql_port, &d->hosts, err,
			      errlen) != 0) {
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
	mysql_hosts_free(&d->hosts);
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
