/* Brute-force defence: how fast a client may have its credentials checked.
 *
 * Every check is an attempt against three records: the client's network
 * (an IPv4 address, or an IPv6 /64), the canonical login (auth_login.h)
 * and the pair of the two. Each record counts its recent failures (15
 * minutes' memory). Once a record has AUTH_PENALTY_GRACE failures (plus
 * the attempts still being checked), its next check waits until the
 * previous one's slot has passed: the slots are AuthFailureDelay seconds
 * apart, doubling with each failure up to AuthFailureDelayMax. So neither
 * many addresses against one login nor many logins from one network go
 * faster than one check per AuthFailureDelayMax once under attack, and
 * since a slot is taken when a check starts (not when it ends), parallel
 * connections and pipelined commands queue behind each other.
 *
 * The owner is spared: a (network, login) pair that logged in successfully
 * in the last AUTH_PENALTY_KNOWN_SECONDS is "known" and waits only for its
 * own record, not for the login's or the network's. A botnet guessing
 * alice's password does not slow alice at home, and one user's typing
 * mistakes behind a NAT do not slow the others there.
 *
 * Shared by every I/O thread; memory is bounded whatever clients send. */
#ifndef TPOPS_AUTH_PENALTY_H
#define TPOPS_AUTH_PENALTY_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Failures a record may have before its checks are spaced out: a few
 * typing mistakes hold nobody up. */
#define AUTH_PENALTY_GRACE 3
/* Failures older than this (since the record's last one) are forgotten. */
#define AUTH_PENALTY_MEMORY_SECONDS 900
/* How long a successful login keeps its (network, login) pair known. */
#define AUTH_PENALTY_KNOWN_SECONDS (30 * 86400)

/* The network an address counts as: "192.0.2.7" for IPv4 (and
 * IPv4-mapped IPv6), "2001:db8:1:2::/64" for IPv6. Text, so that it can be
 * logged; out should hold AUTH_NETWORK_SIZE. */
#define AUTH_NETWORK_SIZE 64
void auth_penalty_network(const struct sockaddr *addr, char *out, size_t outlen);

/* One attempt's place in the records. Filled by auth_attempt_init; the
 * caller keeps it from the start of the check to its end. */
struct auth_attempt {
	uint64_t net, login, pair; /* record keys */
	bool known;                /* the pair logged in recently */
	bool started;              /* auth_attempt_start returned 0 */
};

/* network: from auth_penalty_network; login: canonical (may be empty:
 * then only the network counts). */
void auth_attempt_init(struct auth_attempt *a, const char *network, const char *login);

/* 0 when the check may start now (its slot is taken: end it with
 * auth_attempt_end); else the milliseconds to wait before asking again.
 * base, max: AuthFailureDelay, AuthFailureDelayMax in seconds; base 0
 * turns the defence off. */
long auth_attempt_start(struct auth_attempt *a, int base, int max);

/* Takes the slot without waiting: for a failure that needed no check
 * (a malformed SASL identity), which still counts. */
void auth_attempt_take(struct auth_attempt *a, int base, int max);

enum auth_outcome {
	AUTH_OUTCOME_FAILURE, /* wrong credentials or unknown login */
	AUTH_OUTCOME_SUCCESS, /* the credentials were right */
	AUTH_OUTCOME_NONE,    /* no verdict (database down, exchange abandoned) */
};
/* Ends a started attempt (nothing for one never started). For a failure,
 * returns the seconds its answer is to be held back: base for the first
 * recent failure of the network, login or pair, doubling per further one,
 * at most max; else 0. A success makes the pair known and forgets its
 * failures (those of others stay). */
int auth_attempt_end(struct auth_attempt *a, enum auth_outcome outcome, int base, int max);

/* For tests: forget everything. */
void auth_penalty_reset(void);

#endif
