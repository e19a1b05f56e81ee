/* Brute-force slowdown: failure counts per client address and per login. */
#include "auth_penalty.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A lossy table: a key hashes to one slot and a collision replaces the
 * older entry. That bounds memory whatever an attacker sends; the hash
 * seed is random so that collisions cannot be aimed. */
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

static uint64_t hash(char kind, const char *text)
{
	if (seed == 0)
		seed = ((uint64_t)arc4random() << 32 | arc4random()) | 1;
	uint64_t h = seed ^ (uint64_t)kind;
	for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++) {
		h ^= *p;
		h *= 0x100000001b3ULL;
		h ^= h >> 29;
	}
	return h ? h : 1;
}

static struct slot *slot_for(uint64_t key, time_t now)
{
	struct slot *s = &slots[key % PENALTY_SLOTS];
	if (s->key != key || now - s->last > PENALTY_MEMORY_SECONDS) {
		s->key = key;
		s->failures = 0;
	}
	return s;
}

int auth_penalty_failure(const char *address, const char *login, int base, int max)
{
	time_t now = time(NULL);
	pthread_mutex_lock(&mutex);
	struct slot *a = slot_for(hash('a', address), now);
	a->failures++;
	a->last = now;
	unsigned failures = a->failures;
	if (login != NULL && login[0] != '\0') {
		struct slot *l = slot_for(hash('l', login), now);
		l->failures++;
		l->last = now;
		if (l->failures > failures)
			failures = l->failures;
	}
	pthread_mutex_unlock(&mutex);
	long delay = base;
	for (unsigned i = 1; i < failures && delay < max; i++)
		delay *= 2;
	if (delay > max)
		delay = max;
	if (delay < base)
		delay = base;
	return (int)delay;
}

void auth_penalty_success(const char *address, const char *login)
{
	time_t now = time(NULL);
	pthread_mutex_lock(&mutex);
	slot_for(hash('a', address), now)->failures = 0;
	if (login != NULL)
		slot_for(hash('l', login), now)->failures = 0;
	pthread_mutex_unlock(&mutex);
}
