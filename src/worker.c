/* Storage workers: a job queue served by a pool of threads. */
#include "worker.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "ioloop.h"
#include "log.h"
#include "xalloc.h"

static struct {
	pthread_mutex_t mutex;
	pthread_cond_t ready;
	struct job *head, *tail;
	bool stopping;
	pthread_t *threads;
	int nthreads;
	bool connect_now;
	const struct config *cfg;
} pool = {.mutex = PTHREAD_MUTEX_INITIALIZER, .ready = PTHREAD_COND_INITIALIZER};

static __thread struct db *thread_db;

struct db *worker_db(char *err, size_t errlen)
{
	if (thread_db != NULL)
		return thread_db;
	/* a reload may swap the configuration meanwhile: hold this one */
	pthread_mutex_lock(&pool.mutex);
	const struct config *cfg = config_hold(pool.cfg);
	pthread_mutex_unlock(&pool.mutex);
	if (db_open(cfg, &thread_db, err, errlen) != DB_OK)
		thread_db = NULL;
	config_release(cfg);
	return thread_db;
}

void worker_set_config(const struct config *cfg)
{
	config_hold(cfg);
	pthread_mutex_lock(&pool.mutex);
	const struct config *old = pool.cfg;
	pool.cfg = cfg;
	pthread_mutex_unlock(&pool.mutex);
	config_release(old);
}

static void close_thread_db(void)
{
	if (thread_db != NULL) {
		db_close(thread_db);
		thread_db = NULL;
	}
}

void worker_db_discard(void)
{
	if (thread_db != NULL && !thread_db->ops->reconnects)
		close_thread_db();
}

static void *worker_main(void *arg)
{
	(void)arg;
	char err[256];
	if (pool.connect_now && worker_db(err, sizeof err) == NULL)
		log_warn("storage worker: no database connection yet (tried again at the "
			 "first job): %s", err);
	for (;;) {
		pthread_mutex_lock(&pool.mutex);
		while (pool.head == NULL && !pool.stopping)
			pthread_cond_wait(&pool.ready, &pool.mutex);
		struct job *job = pool.head;
		if (job == NULL) { /* stopping and the queue is empty */
			pthread_mutex_unlock(&pool.mutex);
			break;
		}
		pool.head = job->next;
		if (pool.head == NULL)
			pool.tail = NULL;
		pthread_mutex_unlock(&pool.mutex);

		job->next = NULL;
		metrics_job_started();
		job->run(job);
		metrics_job_finished(job->kind, metrics_now() - job->submitted);
		ioloop_post(job->loop, job);
	}
	close_thread_db();
	return NULL;
}

void worker_pool_start(const struct config *cfg, int threads, bool connect_now)
{
	pool.cfg = config_hold(cfg);
	pool.connect_now = connect_now;
	pool.nthreads = threads;
	pool.threads = xcalloc((size_t)threads, sizeof *pool.threads);
	for (int i = 0; i < threads; i++) {
		int rc = pthread_create(&pool.threads[i], NULL, worker_main, NULL);
		if (rc != 0)
			log_fatal("cannot start storage worker thread: error %d", rc);
	}
}

void worker_pool_stop(void)
{
	pthread_mutex_lock(&pool.mutex);
	pool.stopping = true;
	pthread_cond_broadcast(&pool.ready);
	pthread_mutex_unlock(&pool.mutex);
	for (int i = 0; i < pool.nthreads; i++)
		pthread_join(pool.threads[i], NULL);
	free(pool.threads);
	pool.threads = NULL;
	pool.nthreads = 0;
	config_release(pool.cfg);
	pool.cfg = NULL;
}

void worker_submit(struct job *job)
{
	job->next = NULL;
	job->submitted = metrics_job_queued();
	pthread_mutex_lock(&pool.mutex);
	if (pool.tail != NULL)
		pool.tail->next = job;
	else
		pool.head = job;
	pool.tail = job;
	pthread_mutex_unlock(&pool.mutex);
	/* after the unlock: the woken worker's first step is to take it */
	pthread_cond_signal(&pool.ready);
}
