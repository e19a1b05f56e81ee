/* Where an accepted connection is served. POP3S connections do their TLS
 * handshake first on handshake threads of their own, which run at a lower
 * scheduling priority than the I/O threads: a storm of new connections
 * then takes CPU from the logged-in sessions only when those leave some.
 * Every connection (plain, or TLS once established) then goes to the next
 * I/O loop in turn, so that a burst of connections accepted by one loop
 * is spread over all of them. */
#ifndef TPOPS_HANDOFF_H
#define TPOPS_HANDOFF_H
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "config.h"

struct ioloop;

/* Starts one handshake thread per I/O loop; loops are the I/O loops that
 * serve sessions (kept, not copied). */
void handoff_start(struct ioloop **loops, size_t nloops);
/* On the I/O loop `here` that accepted fd, counted in conn_limit: the
 * connection's session starts on some loop, after the TLS handshake when
 * tls. Takes over cfg's reference and the fd. */
void handoff_connection(struct ioloop *here, const struct config *cfg, int fd,
			const struct sockaddr *addr, socklen_t addrlen, bool tls);
/* SIGTERM: handshakes in progress end, and those that arrive are closed. */
void handoff_shutdown(void);
/* Joins the handshake threads. */
void handoff_stop(void);

#endif
