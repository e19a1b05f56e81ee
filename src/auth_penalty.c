/* Brute-force slowdown: failure counts per client address, per login, and
 * per (address, login) pair. */
#include "auth_penalty.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A lossy table: a key hashes to one slot and a collision replaces the
 * older entry. That bounds memory whatever an attacker sends; the hash
 * seed is random so that collisions cannot be aimed. A lost pair entry
 * only means a success forgets less. */
#define PENALTY_SLOTS 16384
/* Failures older than this are forgotten. */
#define PENALTY_MEMORY_SECONDS 900

struct slot {
	uint64_t key;
	unsigned failures;
	time_t last;
};

static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
static struct slot slots[PENALTY_SLOTS];
static uint64_t seed;

static uint64_t mix(uint64_t h, const char *text)
{
	for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++) {
		h ^= *p;
		h *= 0x100000001b3ULL;
		h ^= h >> 29;
	}
	return h;
}

/* kind 'a': address; 'l': login; 'p': the pair (second is the login).
 * Called with the mutex held. */
static uint64_t hash(char kind, const char *text, const char *second)
{
	if (seed == 0)
		seed = ((uint64_t)arc4random() << 32 | arc4random()) | 1;
	uint64_t h = mix(seed ^ (uint64_t)kind, text);
	if (second != NULL) {
		h ^= 0xff; /* a separator no text holds */
		h *= 0x100000001b3ULL;
		h = mix(h, second);
	}
	return h ? h : 1;
}

/* The slot of key, or NULL when it holds no recent failures of key (when
 * create, a fresh slot for key then). */
static struct slot *slot_for(uint64_t key, time_t now, bool create)
{
	struct slot *s = &slots[key % PENALTY_SLOTS];
	if (s->key != key || now - s->last > PENALTY_MEMORY_SECONDS) {
		if (!create)
			return NULL;
		s->key = key;
		s->failures = 0;
		s->last = now;
	}
	return s;
}

static unsigned failures_of(uint64_t key, time_t now)
{
	struct slot *s = slot_for(key, now, false);
	return s ? s->failures : 0;
}

/* base for the first failure, doubling per further one, at most max */
static int delay_for(unsigned failures, int base, int max)
{
	long delay = base;
	for (unsigned i = 1; i < failures && delay < max; i++)
		delay *= 2;
	if (delay > max)
		delay = max;
	if (delay < base)
		delay = base;
	return (int)delay;
}

static bool has_login(const char *login)
{
	return login != NULL && login[0] != '\0';
}

int auth_penalty_failure(const char *address, const char *login, int base, int max)
{
	time_t now = time(NULL);
	pthread_mutex_lock(&mutex);
	struct slot *a = slot_for(hash('a', address, NULL), now, true);
	a->failures++;
	a->last = now;
	unsigned failures = a->failures;
	if (has_login(login)) {
		struct slot *l = slot_for(hash('l', login, NULL), now, true);
		l->failures++;
		l->last = now;
		if (l->failures > failures)
			failures = l->failures;
		struct slot *p = slot_for(hash('p', address, login), now, true);
		p->failures++;
		p->last = now;
	}
	pthread_mutex_unlock(&mutex);
	return delay_for(failures, base, max);
}

int auth_penalty_pending(const char *address, int base, int max)
{
	time_t now = time(NULL);
	pthread_mutex_lock(&mutex);
	unsigned failures = failures_of(hash('a', address, NULL), now);
	pthread_mutex_unlock(&mutex);
	/* what the next failure would wait: one more than so far */
	return failures >= AUTH_PENALTY_GRACE ? delay_for(failures + 1, base, max) : 0;
}

static void forget(struct slot *s, unsigned n)
{
	if (s != NULL)
		s->failures = s->failures > n ? s->failures - n : 0;
}

void auth_penalty_success(const char *address, const char *login)
{
	if (!has_login(login))
		return;
	time_t now = time(NULL);
	pthread_mutex_lock(&mutex);
	struct slot *p = slot_for(hash('p', address, login), now, false);
	if (p != NULL) {
		unsigned n = p->failures;
		p->failures = 0;
		forget(slot_for(hash('a', address, NULL), now, false), n);
		forget(slot_for(hash('l', login, NULL), now, false), n);
	}
	pthread_mutex_unlock(&mutex);
}
