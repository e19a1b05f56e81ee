/* The LMTP listener (RFC 2033), off unless LMTP_Listen is set: the MTA
 * (Postfix's lmtp(8)) delivers over it, one connection for many messages
 * with an answer per recipient. It has its own I/O thread; every
 * delivery runs on the storage workers through deliver.c, the code
 * tpops-store uses. The daemon calls these four hooks. */
#ifndef TPOPS_LMTP_SERVER_H
#define TPOPS_LMTP_SERVER_H
#include <stdbool.h>
#include <stddef.h>

#include "config.h"

struct lmtp_server;

/* The form of LMTP_Listen (start-up, `tpops -t`, SIGHUP): -1 with a
 * message in err when it is neither an absolute socket path nor
 * inet:ADDRESS:PORT with a numeric address. */
int lmtp_server_check_config(const struct config *cfg, char *err, size_t errlen);

/* As root, before the privilege drop: binds LMTP_Listen (a Unix socket,
 * mode 0666 as Dovecot's lmtp socket, access being decided by its
 * directory; or inet:ADDRESS:PORT). *srv_r is NULL when LMTP is off.
 * -1 with a message in err when it cannot be bound. */
int lmtp_server_bind(const struct config *cfg, struct lmtp_server **srv_r, char *err,
		     size_t errlen);
/* Starts the I/O thread (after the storage workers); returns at once. */
void lmtp_server_start(struct lmtp_server *srv);
/* SIGTERM: stop accepting; idle connections get 421 and are closed, the
 * deliveries in progress finish and are answered. Returns at once. */
void lmtp_server_shutdown(struct lmtp_server *srv);
/* Waits (at most grace_seconds) for the connections to end, then stops
 * the thread and frees everything. false when deliveries still run in
 * the store (then nothing is freed, and the storage workers must not be
 * waited for). NULL does nothing. */
bool lmtp_server_stop(struct lmtp_server *srv, int grace_seconds);

#endif
