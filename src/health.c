/* The database probe behind GET /health, on a thread of its own. */
#include "health.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "log.h"

static struct {
	pthread_mutex_t mutex;
	pthread_cond_t wake;
	pthread_t thread;
	bool running, stopping;
	const struct config *cfg;
	/* the last result */
	bool up;
	struct timespec when; /* CLOCK_MONOTONIC; 0: no probe yet */
	char why[256];
} probe = {.mutex = PTHREAD_MUTEX_INITIALIZER};

/* One probe: the query tpops -t runs. The connection stays open between
 * probes and is dropped after any failure. */
static bool probe_once(struct db **db, char *why, size_t whylen)
{
	if (*db == NULL && db_open(probe.cfg, db, why, whylen) != DB_OK) {
		*db = NULL;
		return false;
	}
	uint64_t bytes;
	if ((*db)->ops->msg_usage(*db, 0, &bytes) == DB_OK)
		return true;
	snprintf(why, whylen, "%s", db_error(*db));
	db_close(*db);
	*db = NULL;
	return false;
}

static void *probe_main(void *arg)
{
	struct db *db = NULL;
	bool was_up = true;
	pthread_mutex_lock(&probe.mutex);
	while (!probe.stopping) {
		pthread_mutex_unlock(&probe.mutex);
		char why[256] = "";
		bool up = probe_once(&db, why, sizeof why);
		if (up != was_up) {
			if (up)
				log_info("health: the database answers again");
			else
				log_warn("health: the database does not answer: %s", why);
			was_up = up;
		}
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		pthread_mutex_lock(&probe.mutex);
		probe.up = up;
		probe.when = now;
		snprintf(probe.why, sizeof probe.why, "%s", why);
		struct timespec next = now;
		next.tv_sec += HEALTH_PROBE_INTERVAL;
		while (!probe.stopping &&
		       pthread_cond_timedwait(&probe.wake, &probe.mutex, &next) == 0)
			;
	}
	pthread_mutex_unlock(&probe.mutex);
	db_close(db);
	return NULL;
}

void health_probe_start(const struct config *cfg)
{
	probe.cfg = config_hold(cfg);
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&probe.wake, &attr);
	pthread_condattr_destroy(&attr);
	int rc = pthread_create(&probe.thread, NULL, probe_main, NULL);
	if (rc != 0)
		log_fatal("cannot start the health probe thread: error %d", rc);
	probe.running = true;
}

void health_probe_stop(void)
{
	if (!probe.running)
		return;
	pthread_mutex_lock(&probe.mutex);
	probe.stopping = true;
	pthread_cond_signal(&probe.wake);
	pthread_mutex_unlock(&probe.mutex);
	pthread_join(probe.thread, NULL);
	probe.running = false;
	pthread_cond_destroy(&probe.wake);
	config_release(probe.cfg);
	probe.cfg = NULL;
}

bool health_database_up(char *why, size_t whylen)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	pthread_mutex_lock(&probe.mutex);
	bool up = probe.up;
	if (!probe.running || probe.when.tv_sec == 0) {
		up = false;
		if (why != NULL)
			snprintf(why, whylen, "no database probe yet");
	} else if (now.tv_sec - probe.when.tv_sec > HEALTH_PROBE_STALE) {
		up = false;
		if (why != NULL)
			snprintf(why, whylen, "the database probe has hung for %lld s",
				 (long long)(now.tv_sec - probe.when.tv_sec));
	} else if (!up && why != NULL) {
		snprintf(why, whylen, "%s", probe.why);
	}
	pthread_mutex_unlock(&probe.mutex);
	return up;
}
