/* Storage workers: a job queue served by a pool of threads. Everything that
 * can block (SQL, files, password hashing) runs here, never on an I/O
 * thread; the result is posted back to the loop that submitted the job. */
#ifndef TPOPS_WORKER_H
#define TPOPS_WORKER_H
#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "db.h"
#include "metrics.h"

struct ioloop;

struct job {
	void (*run)(struct job *job);  /* on a worker thread */
	void (*done)(struct job *job); /* back on the submitting loop's thread */
	struct ioloop *loop;
	struct job *next;
	enum job_kind kind; /* for the metrics; set by whoever makes the job */
	double submitted;   /* metrics_now() at worker_submit */
};

/* Starts `threads` workers, each with its own database connection made
 * with cfg: at once when connect_now (the daemon: the first logins do not
 * wait for connections, and the daemon's descriptors do not grow later),
 * else when the thread first needs one (inetd: one session, which may
 * never log in). A connection that fails is tried again at the next job. */
void worker_pool_start(const struct config *cfg, int threads, bool connect_now);
/* Finishes the queued jobs, then joins the threads and closes their
 * connections. */
void worker_pool_stop(void);
void worker_submit(struct job *job);

/* On a worker thread: this thread's database connection, (re)opened when
 * needed. NULL with a message in err when the database cannot be reached. */
struct db *worker_db(char *err, size_t errlen);
/* On a worker thread: after a temporary failure, drop this thread's
 * connection so that the next job reconnects -- unless the engine
 * reconnects by itself (db_ops.reconnects: MySQL, which keeps a connection
 * that only saw a deadlock or a Galera conflict). */
void worker_db_discard(void);
/* After a reload: connections opened from now on use cfg. */
void worker_set_config(const struct config *cfg);

#endif
