/* Connection limits: in total and per client address (MaxConnections,
 * MaxConnectionsPerIP). Shared by every I/O thread. */
#ifndef TPOPS_CONN_LIMIT_H
#define TPOPS_CONN_LIMIT_H
#include <stdbool.h>
#include <sys/socket.h>

/* Counts a new connection from addr; false (and nothing counted) when
 * either limit is reached. */
bool conn_limit_acquire(const struct sockaddr *addr, int max_total, int max_per_address);
/* A connection counted under from is from now on counted under to (a PROXY
 * header named its client); the total does not change. false (and nothing
 * changed) when to has reached max_per_address. */
bool conn_limit_move(const struct sockaddr *from, const struct sockaddr *to, int max_per_address);
void conn_limit_release(const struct sockaddr *addr);
unsigned conn_limit_total(void);

#endif
