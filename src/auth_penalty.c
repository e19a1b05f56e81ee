/* Brute-force defence: failure records per network, per canonical login
 * and per pair, with the time each record's next check may start. */
#include "auth_penalty.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Lossy tables: a key hashes to one slot and a collision replaces the
 * older entry. That bounds memory whatever an attacker sends; the hash
 * seed is random so that collisions cannot be aimed, and evicting one
 * given record takes about as many fresh keys as there are slots (each of
 * which costs the attacker checks at the rate of its own records). */
#define RECORD_SLOTS 65536
#define KNOWN_SLOTS 65536

struct record {
	uint64_t key;
	unsigned failures;   /* recent ones */
	unsigned pending;    /* attempts started and not yet ended */
	time_t last;         /* CLOCK_MONOTONIC seconds of the last change */
	long long next_free; /* CLOCK_MONOTONIC ms: when the next check may start */
};

struct known {
	uint64_t key;
	time_t when; /* CLOCK_MONOTONIC seconds of the last success */
};

static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
static struct record records[RECORD_SLOTS];
static struct known known_pairs[KNOWN_SLOTS];
static uint64_t seed;

void auth_penalty_network(const struct sockaddr *addr, char *out, size_t outlen)
{
	char text[INET6_ADDRSTRLEN];
	if (addr->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
		inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
		snprintf(out, outlen, "%s", text);
		return;
	}
	if (addr->sa_family == AF_INET6) {
		struct in6_addr a = ((const struct sockaddr_in6 *)addr)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(&a)) {
			inet_ntop(AF_INET, &a.s6_addr[12], text, sizeof text);
			snprintf(out, outlen, "%s", text);
			return;
		}
		/* one IPv6 client (a home, a phone) holds a whole /64 */
		memset(&a.s6_addr[8], 0, 8);
		inet_ntop(AF_INET6, &a, text, sizeof text);
		snprintf(out, outlen, "%s/64", text);
		return;
	}
	snprintf(out, outlen, "local");
}

static uint64_t mix(uint64_t h, const char *text)
{
	for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++) {
		h ^= *p;
		h *= 0x100000001b3ULL;
		h ^= h >> 29;
	}
	return h;
}

/* kind 'n': network; 'l': login; 'p': the pair (second is the login).
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

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The record of key, or NULL when it holds nothing recent (when create, a
 * fresh record for key then). */
static struct record *record_for(uint64_t key, time_t now, bool create)
{
	struct record *r = &records[key % RECORD_SLOTS];
	if (r->key != key ||
	    (r->pending == 0 && now - r->last > AUTH_PENALTY_MEMORY_SECONDS)) {
		if (!create)
			return NULL;
		*r = (struct record){.key = key, .last = now};
	}
	return r;
}

static bool is_known(uint64_t pair, time_t now)
{
	const struct known *k = &known_pairs[pair % KNOWN_SLOTS];
	return k->key == pair && now - k->when <= AUTH_PENALTY_KNOWN_SECONDS;
}

/* base for the first failure, doubling per further one, at most max */
static int delay_for(unsigned failures, int base, int max)
{
	if (base <= 0 || failures == 0)
		return 0;
	long delay = base;
	for (unsigned i = 1; i < failures && delay < max; i++)
		delay *= 2;
	if (delay > max)
		delay = max;
	if (delay < base)
		delay = base;
	return (int)delay;
}

void auth_attempt_init(struct auth_attempt *a, const char *network, const char *login)
{
	pthread_mutex_lock(&mutex);
	a->net = hash('n', network, NULL);
	bool has_login = login != NULL && login[0] != '\0';
	a->login = has_login ? hash('l', login, NULL) : 0;
	a->pair = has_login ? hash('p', network, login) : 0;
	a->known = has_login && is_known(a->pair, now_ms() / 1000);
	a->started = false;
	pthread_mutex_unlock(&mutex);
}

/* The keys an attempt answers to: a known pair only to its own record. */
static size_t attempt_keys(const struct auth_attempt *a, uint64_t keys[3])
{
	size_t n = 0;
	if (a->pair != 0)
		keys[n++] = a->pair;
	if (!a->known) {
		keys[n++] = a->net;
		if (a->login != 0)
			keys[n++] = a->login;
	}
	return n;
}

/* Takes the attempt's slot in each of its records: the check counts as a
 * failure to come, so the attempts behind it wait as if it had failed.
 * Called with the mutex held. */
static void take_slot(struct auth_attempt *a, long long now, int base, int max)
{
	time_t now_s = (time_t)(now / 1000);
	uint64_t keys[3];
	size_t n = attempt_keys(a, keys);
	for (size_t i = 0; i < n; i++) {
		struct record *r = record_for(keys[i], now_s, true);
		r->pending++;
		r->last = now_s;
		unsigned count = r->failures + r->pending;
		if (count >= AUTH_PENALTY_GRACE) {
			long long from = r->next_free > now ? r->next_free : now;
			r->next_free = from + 1000LL * delay_for(count, base, max);
		}
	}
	a->started = true;
}

long auth_attempt_start(struct auth_attempt *a, int base, int max)
{
	if (a->started)
		return 0;
	if (base <= 0) { /* the defence is off */
		a->started = true;
		return 0;
	}
	long long now = now_ms();
	time_t now_s = (time_t)(now / 1000);
	uint64_t keys[3];
	size_t n = attempt_keys(a, keys);
	long long wait = 0;
	pthread_mutex_lock(&mutex);
	for (size_t i = 0; i < n; i++) {
		const struct record *r = record_for(keys[i], now_s, false);
		if (r != NULL && r->failures + r->pending >= AUTH_PENALTY_GRACE &&
		    r->next_free - now > wait)
			wait = r->next_free - now;
	}
	if (wait == 0)
		take_slot(a, now, base, max);
	pthread_mutex_unlock(&mutex);
	return (long)wait;
}

void auth_attempt_take(struct auth_attempt *a, int base, int max)
{
	if (a->started)
		return;
	if (base <= 0) {
		a->started = true;
		return;
	}
	pthread_mutex_lock(&mutex);
	take_slot(a, now_ms(), base, max);
	pthread_mutex_unlock(&mutex);
}

int auth_attempt_end(struct auth_attempt *a, enum auth_outcome outcome, int base, int max)
{
	if (!a->started)
		return 0;
	a->started = false;
	if (base <= 0)
		return 0;
	time_t now_s = (time_t)(now_ms() / 1000);
	uint64_t keys[3];
	size_t n = attempt_keys(a, keys);
	unsigned failures = 0;
	pthread_mutex_lock(&mutex);
	unsigned pair_failures = 0;
	for (size_t i = 0; i < n; i++) {
		struct record *r = record_for(keys[i], now_s, outcome == AUTH_OUTCOME_FAILURE);
		if (r == NULL)
			continue;
		if (r->pending > 0)
			r->pending--;
		if (outcome == AUTH_OUTCOME_FAILURE) {
			r->failures++;
			r->last = now_s;
			if (r->failures > failures)
				failures = r->failures;
		}
		if (keys[i] == a->pair)
			pair_failures = r->failures;
	}
	if (outcome == AUTH_OUTCOME_SUCCESS && a->pair != 0) {
		/* the pair's own failures were the owner's: they no longer
		 * count for the network nor for the login, and the pair's
		 * slots are free again; others' failures stay */
		struct record *p = record_for(a->pair, now_s, false);
		if (p != NULL) {
			p->failures = 0;
			p->next_free = 0;
		}
		uint64_t others[2] = {a->net, a->login};
		for (size_t i = 0; i < 2 && !a->known; i++) {
			struct record *r = others[i] ? record_for(others[i], now_s, false) : NULL;
			if (r != NULL)
				r->failures = r->failures > pair_failures ? r->failures - pair_failures : 0;
		}
		known_pairs[a->pair % KNOWN_SLOTS] = (struct known){.key = a->pair, .when = now_s};
	}
	pthread_mutex_unlock(&mutex);
	return outcome == AUTH_OUTCOME_FAILURE ? delay_for(failures, base, max) : 0;
}

void auth_penalty_reset(void)
{
	pthread_mutex_lock(&mutex);
	memset(records, 0, sizeof records);
	memset(known_pairs, 0, sizeof known_pairs);
	pthread_mutex_unlock(&mutex);
}
