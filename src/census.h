/* Questions about the sessions, answered by each I/O thread about its own
 * sessions on its own thread (a session is never read from another one):
 * how many in each state, who is logged in, and ending a user's sessions
 * (tpops-admin kick). */
#ifndef TPOPS_CENSUS_H
#define TPOPS_CENSUS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "metrics.h"

struct ioloop;

/* One logged-in session, for tpops-admin who. */
struct census_row {
	uint64_t id;
	char login[128];
	char peer[64];
	enum metric_session_state state;
	time_t since;         /* when the connection came */
	size_t messages;      /* in the maildrop at login */
	unsigned retrieved;   /* messages sent whole by RETR */
	uint64_t octets_sent; /* octets sent on the connection (TCP) */
	bool tls;
	unsigned thread; /* the I/O thread serving it */
};

enum census_action {
	CENSUS_COUNT, /* sessions by state */
	CENSUS_LIST,  /* and a row per logged-in session */
	CENSUS_KICK,  /* end the sessions of `login`; rows: those sessions */
	CENSUS_FIND,  /* which of `ids` still exist; rows: those */
};

struct census {
	uint64_t sessions[SESSION_STATES];
	unsigned loops, answered; /* a loop that did not answer in time is missing */
	struct census_row *rows;
	size_t nrows;
};

/* The I/O threads to ask; once, before any census. */
void census_set_loops(struct ioloop *const *loops, size_t n);

/* Asks every I/O thread and waits for the answers, at most timeout_ms: a
 * loop that has not answered by then is left out (answered < loops).
 * login: for CENSUS_KICK; ids: for CENSUS_FIND. Blocks: never call it on
 * an I/O thread (the administration thread asks). */
struct census *census_take(enum census_action action, const char *login, const uint64_t *ids,
			   size_t nids, int timeout_ms);
void census_free(struct census *c);

#endif
