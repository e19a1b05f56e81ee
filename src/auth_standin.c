/* The stand-in for unknown users: the costliest stored scheme, measured. */
#include "auth_standin.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "log.h"
#include "password.h"
#include "xalloc.h"

/* A real check this much costlier than the stand-in replaces it: noise
 * (a busy machine) must not rebuild it all the time. */
#define COSTLIER_FACTOR 1.5

/* The cost the answers are padded to: the typical cost (a moving
 * average) of the costliest kind of check, each stored scheme prefix
 * ("{ARGON2ID}", "$2b$", ...) being a kind. An average, not a maximum: one
 * check slowed by a busy machine must not raise every answer's time. */
#define KINDS_MAX 16
#define KIND_NAME 24

struct kind {
	char name[KIND_NAME];
	double cost; /* seconds, moving average */
};

static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
static char *standin;       /* NULL: the built-in SHA512-CRYPT one */
static double standin_cost; /* measured when it was made */
static struct kind kinds[KINDS_MAX];
static size_t nkinds;
static bool calibrated;

static double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The kind of a stored password: its "{SCHEME}" or "$id$" prefix. */
static void kind_name(const char *stored, char name[KIND_NAME])
{
	const char *end = NULL;
	if (stored[0] == '{')
		end = strchr(stored, '}');
	else if (stored[0] == '$')
		end = strchr(stored + 1, '$');
	size_t len = end != NULL ? (size_t)(end - stored) + 1 : 0;
	if (len >= KIND_NAME)
		len = KIND_NAME - 1;
	memcpy(name, stored, len);
	name[len] = '\0';
}

/* A check's cost against stored, with the mutex held. */
static void observe(const char *stored, double cost)
{
	char name[KIND_NAME];
	kind_name(stored, name);
	struct kind *k = NULL;
	for (size_t i = 0; i < nkinds && k == NULL; i++)
		if (strcmp(kinds[i].name, name) == 0)
			k = &kinds[i];
	if (k == NULL) {
		if (nkinds == KINDS_MAX)
			return;
		k = &kinds[nkinds++];
		memcpy(k->name, name, KIND_NAME);
		k->cost = cost;
		return;
	}
	k->cost = 0.8 * k->cost + 0.2 * cost;
}

/* Builds a stand-in like stored, measures it, keeps it when costlier. */
static void consider(const char *stored)
{
	char *candidate = password_standin(stored);
	if (candidate == NULL)
		return;
	double start = now_seconds();
	(void)password_verify(candidate, "-", 1);
	double cost = now_seconds() - start;
	pthread_mutex_lock(&mutex);
	observe(candidate, cost);
	if (cost > standin_cost) {
		char *old = standin;
		standin = candidate;
		standin_cost = cost;
		candidate = old;
	}
	pthread_mutex_unlock(&mutex);
	free(candidate);
}

static void consider_user(const struct user *u, void *ctx)
{
	(void)ctx;
	consider(u->passwd);
}

void auth_standin_calibrate(struct db *db)
{
	pthread_mutex_lock(&mutex);
	bool done = calibrated;
	pthread_mutex_unlock(&mutex);
	if (done)
		return;
	if (db->ops->user_samples(db, consider_user, NULL) != DB_OK) {
		/* unknown users cost the built-in stand-in until it works */
		log_warn("measuring the stored password schemes: %s (again at the next login)",
			 db_error(db));
		return;
	}
	pthread_mutex_lock(&mutex);
	calibrated = true;
	pthread_mutex_unlock(&mutex);
}

void auth_standin_verify(const char *given, size_t given_len)
{
	pthread_mutex_lock(&mutex);
	char *copy = standin ? xstrdup(standin) : NULL;
	pthread_mutex_unlock(&mutex);
	double start = now_seconds();
	if (copy != NULL)
		(void)password_verify(copy, given, given_len);
	else
		password_verify_dummy(given, given_len);
	double cost = now_seconds() - start;
	pthread_mutex_lock(&mutex);
	observe(copy != NULL ? copy : "$6$", cost);
	pthread_mutex_unlock(&mutex);
	free(copy);
}

void auth_standin_note(const char *stored, double seconds)
{
	if (password_plaintext(stored) != NULL)
		return;
	pthread_mutex_lock(&mutex);
	observe(stored, seconds);
	bool costlier = seconds > COSTLIER_FACTOR * standin_cost;
	pthread_mutex_unlock(&mutex);
	if (costlier)
		consider(stored);
}

double auth_standin_seconds(void)
{
	pthread_mutex_lock(&mutex);
	double cost = 0;
	for (size_t i = 0; i < nkinds; i++)
		if (kinds[i].cost > cost)
			cost = kinds[i].cost;
	pthread_mutex_unlock(&mutex);
	return cost;
}
