/* Listening sockets of the daemon: the POP3 ports (server.c), the metrics
 * listener and the control socket (admin.c), the LMTP listener
 * (lmtp_server.c). One place binds them, so all refuse the same things
 * with the same words. */
#ifndef TPOPS_LISTEN_SOCKET_H
#define TPOPS_LISTEN_SOCKET_H

#include <stddef.h>

/* A non-blocking listening TCP socket on a numeric IPv4 or IPv6 address
 * (no name lookup: a daemon that binds must not wait for DNS). An IPv6
 * socket takes IPv6 only, so "0.0.0.0" and "::" can share a port. key
 * names the tpops.conf key in errors. Returns the fd, or -1 with err. */
int listen_tcp(const char *key, const char *address, int port, int backlog, char *err,
	       size_t errlen);

/* Makes way for a Unix socket at path: a socket file left by an earlier
 * run is removed; one that a live process still accepts on, or anything
 * that is not a socket, is refused. 0, or -1 with err. */
int listen_unix_clear_stale(const char *key, const char *path, char *err, size_t errlen);

#endif
