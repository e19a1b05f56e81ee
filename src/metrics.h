/* The daemon's counters, gauges and histograms, rendered in the
 * Prometheus text format, in OpenMetrics, or as a table for people.
 *
 * Every hook adds to the calling thread's own block of counters (made at
 * its first count): no lock, no allocation after that, no locked
 * instruction and no cache line shared with another counting thread, so
 * any thread (I/O, worker, listener) may count. A scrape sums the blocks. Counting is off until metrics_enable() (MetricsListen or
 * ControlSocket set); then each hook is one predictable branch. Gauges
 * that describe sessions are not kept here: they are counted on each I/O
 * thread when asked (census.h), so the session path pays nothing for them. */
#ifndef TPOPS_METRICS_H
#define TPOPS_METRICS_H
#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "deliver.h"

enum metric_refusal {
	REFUSED_TOTAL_LIMIT,  /* MaxConnections */
	REFUSED_PER_IP_LIMIT, /* MaxConnectionsPerIP */
	REFUSED_TLS_REQUIRED, /* RequireTLS: a login attempt without TLS */
	REFUSED_SHUTTING_DOWN,
	REFUSED_PROXY_HEADER, /* ProxyProtocol: no or a bad PROXY header */
	REFUSAL_KINDS
};

enum metric_login_result {
	LOGIN_RESULT_OK,
	LOGIN_RESULT_FAILED,    /* wrong credentials or unknown user */
	LOGIN_RESULT_IN_USE,    /* the maildrop is locked by another session */
	LOGIN_RESULT_TEMPORARY, /* database or storage unreachable */
	LOGIN_RESULT_PERMANENT, /* the maildrop cannot be opened */
	LOGIN_RESULTS
};

enum metric_hold {
	HOLD_BEFORE_CHECK,   /* an address with recent failures waits first */
	HOLD_AFTER_FAILURE,  /* the answer to a failed login is delayed */
	HOLD_KINDS
};

/* What a storage job does; set in struct job by whoever makes it. */
enum job_kind {
	JOB_OTHER, /* 0, so that a job nobody labelled is still counted */
	JOB_LOGIN,      /* user lookup, credential check, lock, listing */
	JOB_LISTING,    /* the maildrop listing inside a login (timed alone) */
	JOB_RETR_PIECE, /* one piece of RETR/TOP, or a read-ahead */
	JOB_COMMIT,     /* the deletions at QUIT */
	JOB_LEASE,      /* renewing or releasing the maildrop lock */
	JOB_KINDS
};

void metrics_enable(void);
bool metrics_enabled(void);

void metrics_connection_accepted(void);
void metrics_connection_refused(enum metric_refusal why);
/* method: the login's mechanism as logged (USER, APOP, PLAIN, ...). */
void metrics_login(const char *method, enum metric_login_result result);
void metrics_login_hold(enum metric_hold when);
/* The outcome for one LMTP recipient: refused at RCPT or after DATA, or
 * stored. */
void metrics_lmtp_delivery(enum deliver_result result);
void metrics_message_retrieved(uint64_t octets);
/* Octets of a RETR the kernel sent straight from the message's file
 * (SSL_sendfile under kernel TLS). */
void metrics_sendfile_octets(uint64_t octets);
void metrics_messages_deleted(uint64_t count, uint64_t octets);
void metrics_quit_commit(bool ok);
void metrics_tls_handshake(bool ok);
/* A TLS session whose handshake finished: who encrypts its records. */
void metrics_tls_session(bool kernel_encrypts);
void metrics_listing_cache(bool hit);

/* Storage jobs: the queue and the workers call these. */
/* Returns the time to pass to metrics_job_finished (metrics_now()). */
double metrics_job_queued(void);
void metrics_job_started(void);
/* seconds from submission to the end of its work */
void metrics_job_finished(enum job_kind kind, double seconds);
/* A step inside a job timed on its own (JOB_LISTING). */
void metrics_job_observe(enum job_kind kind, double seconds);

/* The database: host names the server (host:port, a socket, a file). A
 * connection opened on a thread that had one before is a reconnect. */
void metrics_db_connect(const char *host, bool ok);
void metrics_db_error(const char *host);

/* The current monotonic time in seconds, for job timing; 0 while
 * counting is off. */
double metrics_now(void);

/* What the I/O threads report when asked (census.c), and what the
 * administration thread knows, for rendering. */
enum metric_session_state {
	SESSION_AUTHORIZATION,
	SESSION_TRANSACTION,
	SESSION_STREAMING,
	SESSION_WAITING_STORAGE,
	SESSION_LOGIN_DELAY,
	SESSION_CLOSING,
	SESSION_STATES
};
const char *metrics_session_state_name(enum metric_session_state state);

struct metrics_live {
	uint64_t sessions[SESSION_STATES];
	unsigned loops_answered, loops; /* I/O threads that answered the census */
	unsigned connections_open;      /* counted against MaxConnections */
	bool probing;                   /* the database is probed (MetricsListen) */
	bool database_up;               /* the last probe (health.c) */
	bool accepting;
	bool healthy;
};

enum metrics_format {
	METRICS_PROMETHEUS,  /* text format 0.0.4 */
	METRICS_OPENMETRICS, /* OpenMetrics 1.0.0 */
	METRICS_TABLE,       /* tpops-admin stats */
};
void metrics_render(struct buf *out, enum metrics_format format, const struct metrics_live *live);

#endif
