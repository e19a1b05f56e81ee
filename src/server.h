/* Listeners and I/O threads: binds the POP3 ports, accepts connections on
 * every loop, applies the connection limits and starts sessions. */
#ifndef TPOPS_SERVER_H
#define TPOPS_SERVER_H
#include <stdbool.h>
#include <stddef.h>

#include "config.h"

struct ioloop;
struct server;

/* Binds every Listen address on Port (as root, before dropping
 * privileges). NULL with a message in err when one cannot be bound. */
struct server *server_bind(const struct config *cfg, char *err, size_t errlen);
/* Starts the I/O threads; returns at once. */
void server_start(struct server *srv, int io_threads);
/* New sessions use cfg from now on (SIGHUP); running ones keep theirs. */
void server_set_config(struct server *srv, const struct config *cfg);
/* SIGTERM: each loop stops accepting and ends its idle sessions; sessions
 * in the middle of QUIT's commit finish. Returns at once. */
void server_shutdown(struct server *srv);
/* Ends the loops (and with them any session still open) and joins them. */
void server_stop(struct server *srv);
void server_free(struct server *srv);
/* The I/O threads, once server_start has run. */
struct ioloop *const *server_loops(const struct server *srv, size_t *n_r);
/* False once SIGTERM stopped new connections, and while MaxConnections
 * are open (GET /health). */
bool server_accepting(struct server *srv);

#endif
