/* One LMTP connection (lmtp_session.c) and what it shares with its
 * listener (lmtp_server.c). Everything here runs on the LMTP I/O thread,
 * except the counters the daemon's main thread reads at shutdown. */
#ifndef TPOPS_LMTP_SESSION_H
#define TPOPS_LMTP_SESSION_H
#include <stdatomic.h>
#include <stdbool.h>

#include "config.h"
#include "worker.h"

struct ioloop;
struct lmtp_session;

struct lmtp_server {
	const struct config *cfg; /* held; LMTP_* keys change at a restart */
	struct ioloop *loop;
	struct evconnlistener *listener;
	char *socket_path; /* a Unix socket we made, NULL for TCP */
	int fd;
	struct lmtp_session *sessions; /* the open connections */
	bool stopping;
	unsigned jobs; /* in flight; read by the main thread only after the join */
	atomic_uint nsessions; /* read by the main thread at stop */
	struct job shutdown_job;
};

/* Starts a session on the accepted socket fd. */
void lmtp_session_start(struct lmtp_server *srv, int fd);
/* Shutdown: closes idle sessions with 421; busy ones close once answered. */
void lmtp_session_shutdown_all(struct lmtp_server *srv);
/* Frees every session at the very end, after the thread was joined and
 * only when srv->jobs is 0. */
void lmtp_session_free_all(struct lmtp_server *srv);

#endif
