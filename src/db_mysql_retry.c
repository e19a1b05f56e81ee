/* The MySQL engine's retry policy, in one place: which server and client
 * errors an operation runs again after, on which connection, how often and
 * how long it waits in between, and which it reports.
 *
 *   conflicts: 1213 (a deadlock, and how Galera reports a transaction that
 *   failed certification against a concurrent write on another node or was
 *   aborted for one) and 1205 (lock wait timeout). The server rolled the
 *   transaction back; it runs again on the same connection, which is sound.
 *
 *   node failures: the connection lost (2006, 2013...), the server shutting
 *   down, or 1047 (a Galera node that is not in the primary component).
 *   The connection is dropped and the operation runs again on the next
 *   host that answers and is ready (db_mysql_conn.c); when none does, the
 *   failure is reported at once. It runs again only when running it
 *   again is safe: always for an operation that is safe to repeat (reads,
 *   lease statements, QUIT's deletes), and for any other only when the
 *   server cannot have committed it (the connection was lost before
 *   COMMIT, or before its one statement was sent).
 *
 *   anything else (not found, duplicates, quota, schema, syntax, access,
 *   retries used up) is the operation's answer or is reported.
 *
 * At most MYSQL_RETRY_ATTEMPTS attempts within MYSQL_RETRY_BUDGET_MS; the
 * waits grow exponentially with full jitter, so that two servers that
 * collided do not collide again in step. */
#include <errmsg.h>
#include <mysql.h>
#include <mysqld_error.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "db_mysql.h"
#include "log.h"
#include "metrics.h"
#include "tpops_limits.h"

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

enum failure {
	FAILURE_ANSWER,   /* not a failure to retry: report it */
	FAILURE_CONFLICT, /* rolled back by the server: again, same connection */
	FAILURE_NODE,     /* this server cannot serve: again, another host */
};

static enum failure failure_of(unsigned int err)
{
	switch (err) {
	case ER_LOCK_DEADLOCK:
	case ER_LOCK_WAIT_TIMEOUT:
		return FAILURE_CONFLICT;
	case ER_UNKNOWN_COM_ERROR: /* Galera 1047: not in the primary component */
	case ER_SERVER_SHUTDOWN:
	case ER_CONNECTION_KILLED:
	case ER_CON_COUNT_ERROR:
	case ER_OPTION_PREVENTS_STATEMENT: /* a read-only replica after a switch */
	case ER_READ_ONLY_MODE:
	case CR_CONNECTION_ERROR:
	case CR_CONN_HOST_ERROR:
	case CR_SERVER_GONE_ERROR:
	case CR_SERVER_LOST:
	case CR_SERVER_LOST_EXTENDED:
	case CR_ERR_NET_READ:
	case CR_ERR_NET_WRITE:
	case CR_COMMANDS_OUT_OF_SYNC:
		return FAILURE_NODE;
	default:
		return FAILURE_ANSWER;
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

int dbm_fail_code(struct db_mysql *d, unsigned int err, const char *msg, const char *what)
{
	char label[160];
	if (status_of(err) < 0)
		metrics_db_error(dbm_server_label(d, d->host_at, label, sizeof label));
	if (err == ER_NET_PACKET_TOO_LARGE)
		snprintf(d->error, sizeof d->error,
			 "mysql: %s: %s (raise the server's max_allowed_packet)", what, msg);
	else
		snprintf(d->error, sizeof d->error, "mysql: %s: %s", what, msg);
	d->last_err = err;
	if (connection_lost(err)) {
		d->broken = true;
		/* CR_SERVER_GONE_ERROR: the request could not be sent. Else it
		 * may have run: a COMMIT, or a statement outside a transaction
		 * (autocommit), may have been committed; what starts a
		 * transaction commits nothing. */
		if (err != CR_SERVER_GONE_ERROR &&
		    (d->committing || (!d->in_txn && !d->starting_txn)))
			d->outcome_unknown = true;
	}
	return status_of(err);
}

int dbm_fail_stmt(struct db_mysql *d, MYSQL_STMT *s, const char *what)
{
	return dbm_fail_code(d, mysql_stmt_errno(s), mysql_stmt_error(s), what);
}

int dbm_fail_conn(struct db_mysql *d, const char *what)
{
	return dbm_fail_code(d, mysql_errno(d->conn), mysql_error(d->conn), what);
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* xorshift64*: jitter needs no quality, only no lockstep between threads
 * and processes (seeded per connection in db_mysql_conn.c). */
static uint64_t next_random(struct db_mysql *d)
{
	uint64_t x = d->random;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	d->random = x;
	return x * 0x2545F4914F6CDD1DULL;
}

/* Full jitter: a wait drawn from [0, base * 2^(attempt-1)], capped. A
 * failover's first attempt on the next host does not wait at all. */
static void backoff(struct db_mysql *d, enum failure f, int attempt)
{
	int64_t cap = f == FAILURE_CONFLICT ? MYSQL_RETRY_CONFLICT_MS : MYSQL_RETRY_NODE_MS;
	if (f == FAILURE_NODE && attempt == 1)
		return;
	int shift = attempt - 1 < 16 ? attempt - 1 : 16;
	int64_t ceiling = cap << shift;
	if (ceiling > MYSQL_RETRY_MAX_WAIT_MS)
		ceiling = MYSQL_RETRY_MAX_WAIT_MS;
	int64_t wait = (int64_t)(next_random(d) % (uint64_t)(ceiling + 1));
	struct timespec ts = {wait / 1000, (wait % 1000) * 1000000};
	while (nanosleep(&ts, &ts) != 0)
		;
}

int dbm_run(struct db_mysql *d, enum dbm_repeat repeat, int (*attempt_once)(struct db_mysql *d,
									       void *arg),
	    void *arg)
{
	int64_t started = now_ms();
	for (int attempt = 1;; attempt++) {
		d->attempt = attempt;
		d->last_err = 0;
		d->outcome_unknown = false;
		d->in_txn = d->committing = d->starting_txn = false;
		int status = dbm_ready(d);
		/* No host answered and was ready: waiting for one would only
		 * keep the client waiting (a login is answered [SYS/TEMP] at
		 * once, as with one server down). */
		if (status != DB_OK)
			return status;
		status = attempt_once(d, arg);
		if (status >= DB_OK)
			return status; /* done, or an answer: not found, conflict, quota */
		enum failure f = failure_of(d->last_err);
		bool safe = repeat == DBM_REPEATABLE || !d->outcome_unknown;
		if (f == FAILURE_ANSWER || !safe || attempt >= MYSQL_RETRY_ATTEMPTS ||
		    now_ms() - started >= MYSQL_RETRY_BUDGET_MS) {
			if (attempt > 1) {
				size_t len = strlen(d->error);
				snprintf(d->error + len, sizeof d->error - len, " (attempt %d)",
					 attempt);
			}
			if (f != FAILURE_ANSWER && !safe)
				log_warn("%s: not run again, it may have been committed", d->error);
			return status;
		}
		if (f == FAILURE_NODE) {
			/* the next connection starts at the host after this one */
			log_warn("%s: trying the next database host", d->error);
			dbm_drop_host(d);
		} else if (log_debug_enabled()) {
			log_debug("%s: running it again (attempt %d)", d->error, attempt + 1);
		}
		backoff(d, f, attempt);
	}
}
