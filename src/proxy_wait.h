/* With ProxyProtocol: an accepted connection waits here for its PROXY
 * header before its session starts. The wait is bounded by one absolute
 * timeout from accept (PROXY_HEADER_TIMEOUT), however the header trickles
 * in; the connection stays counted against the connection limits all the
 * while (the caller counts it at accept under the socket's address). */
#ifndef TPOPS_PROXY_WAIT_H
#define TPOPS_PROXY_WAIT_H
#include <sys/socket.h>

#include "config.h"

/* Longest wait, in seconds from accept, for a whole PROXY header. A proxy
 * sends it at once; only a client that is not a proxy waits this long. */
#define PROXY_HEADER_TIMEOUT 10

struct event_base;
struct proxy_wait;

/* The header has arrived and was consumed (what follows it is still in the
 * socket). counted: the address the connection is counted under; named:
 * the client the header names (counted again for a LOCAL header). Takes
 * over fd, cfg and the count. */
typedef void proxy_admit_fn(void *arg, const struct config *cfg, int fd,
			    const struct sockaddr *counted, const struct sockaddr *named,
			    socklen_t named_len);

/* Starts waiting on fd (counted under peer) in base's loop and puts the
 * wait on *list. On a bad or late header, or a peer that leaves, the
 * connection is closed without a reply, its count released and cfg
 * dropped; on a good one admit is called. */
void proxy_wait_start(struct proxy_wait **list, struct event_base *base, const struct config *cfg,
		      int fd, const struct sockaddr *peer, socklen_t peer_len,
		      proxy_admit_fn *admit, void *admit_arg);

/* On the loop's thread (SIGTERM): closes every connection still waiting. */
void proxy_wait_close_all(struct proxy_wait **list);

#endif
