/* Connection limits in total and per client address. */
#include "conn_limit.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

/* Open-addressing table of (address, count); IPv4 is stored as
 * IPv4-mapped IPv6 so that one key type serves both. */
#define TABLE_SIZE 65536 /* > MaxConnections' usual range; grows never */

struct slot {
	unsigned char addr[16];
	unsigned count; /* 0 = free */
};

static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
static struct slot *table;
static unsigned total;

static void address_key(const struct sockaddr *sa, unsigned char key[16])
{
	memset(key, 0, 16);
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		key[10] = key[11] = 0xff;
		memcpy(key + 12, &in->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
		/* one IPv6 client holds a whole /64: count it as one address
		 * (IPv4-mapped addresses and ::1 stay whole) */
		static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
		static const unsigned char zero[8] = {0};
		if (memcmp(key, mapped, 12) != 0 && memcmp(key, zero, 8) != 0)
			memset(key + 8, 0, 8);
	}
}

static uint32_t hash(const unsigned char key[16])
{
	uint32_t h = 2166136261u;
	for (int i = 0; i < 16; i++)
		h = (h ^ key[i]) * 16777619u;
	return h;
}

/* The slot holding key, or the free slot where it would go. Deleting
 * leaves no tombstones because counts only drop to 0 when removed, so a
 * lookup stops at the first empty slot; see release. */
static struct slot *find(const unsigned char key[16])
{
	if (table == NULL)
		table = xcalloc(TABLE_SIZE, sizeof *table);
	for (uint32_t i = hash(key), n = 0; n < TABLE_SIZE; i++, n++) {
		struct slot *s = &table[i % TABLE_SIZE];
		if (s->count == 0 || memcmp(s->addr, key, 16) == 0)
			return s;
	}
	return NULL;
}

/* Backward-shift deletion keeps linear probing chains intact. */
static void remove_slot(struct slot *hole)
{
	size_t i = (size_t)(hole - table);
	hole->count = 0;
	for (size_t j = (i + 1) % TABLE_SIZE; table[j].count != 0; j = (j + 1) % TABLE_SIZE) {
		size_t home = hash(table[j].addr) % TABLE_SIZE;
		/* move j into the hole when its home is not between hole and j */
		int between = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
		if (!between) {
			table[i] = table[j];
			table[j].count = 0;
			i = j;
		}
	}
}

bool conn_limit_acquire(const struct sockaddr *addr, int max_total, int max_per_address)
{
	unsigned char key[16];
	address_key(addr, key);
	bool ok = false;
	pthread_mutex_lock(&mutex);
	if (total < (unsigned)max_total) {
		struct slot *s = find(key);
		if (s != NULL && s->count < (unsigned)max_per_address) {
			memcpy(s->addr, key, 16);
			s->count++;
			total++;
			ok = true;
		}
	}
	pthread_mutex_unlock(&mutex);
	return ok;
}

bool conn_limit_move(const struct sockaddr *from, const struct sockaddr *to, int max_per_address)
{
	unsigned char from_key[16], to_key[16];
	address_key(from, from_key);
	address_key(to, to_key);
	if (memcmp(from_key, to_key, 16) == 0)
		return true;
	bool ok = false;
	pthread_mutex_lock(&mutex);
	struct slot *s = find(to_key);
	if (s != NULL && s->count < (unsigned)max_per_address) {
		memcpy(s->addr, to_key, 16);
		s->count++;
		/* taking a free slot moved nothing: from is found as before */
		struct slot *old = find(from_key);
		if (old != NULL && old->count > 0 && --old->count == 0)
			remove_slot(old);
		ok = true;
	}
	pthread_mutex_unlock(&mutex);
	return ok;
}

void conn_limit_release(const struct sockaddr *addr)
{
	unsigned char key[16];
	address_key(addr, key);
	pthread_mutex_lock(&mutex);
	struct slot *s = find(key);
	if (s != NULL && s->count > 0) {
		total--;
		if (--s->count == 0)
			remove_slot(s);
	}
	pthread_mutex_unlock(&mutex);
}

unsigned conn_limit_total(void)
{
	pthread_mutex_lock(&mutex);
	unsigned n = total;
	pthread_mutex_unlock(&mutex);
	return n;
}
