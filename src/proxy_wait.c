/* The wait for a PROXY header: peeked at until whole, one absolute timer. */
#include "proxy_wait.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn_limit.h"
#include "log.h"
#include "metrics.h"
#include "proxy_proto.h"
#include "xalloc.h"

struct proxy_wait {
	struct proxy_wait **list, *prev, *next; /* the acceptor's waits (for SIGTERM) */
	const struct config *cfg;
	int fd;
	struct event *readable;
	struct event *deadline; /* set once at accept: more octets never extend it */
	struct sockaddr_storage peer;
	socklen_t peer_len;
	proxy_admit_fn *admit;
	void *admit_arg;
};

static void unlink_wait(struct proxy_wait *pw)
{
	if (pw->prev != NULL)
		pw->prev->next = pw->next;
	else
		*pw->list = pw->next;
	if (pw->next != NULL)
		pw->next->prev = pw->prev;
	event_free(pw->readable);
	event_free(pw->deadline);
}

/* Gives up on the connection: closed, its count released. */
static void proxy_wait_fail(struct proxy_wait *pw)
{
	unlink_wait(pw);
	metrics_connection_refused(REFUSED_PROXY_HEADER);
	close(pw->fd);
	conn_limit_release((struct sockaddr *)&pw->peer);
	config_release(pw->cfg);
	free(pw);
}

/* The connection's own address (the proxy's, or whoever connected),
 * for the log. */
static const char *peer_text(const struct proxy_wait *pw, char *out, size_t size)
{
	const struct sockaddr *sa = (const struct sockaddr *)&pw->peer;
	const void *addr = sa->sa_family == AF_INET6
				   ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
				   : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
	if (inet_ntop(sa->sa_family, addr, out, (socklen_t)size) == NULL)
		snprintf(out, size, "?");
	return out;
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	char from[INET6_ADDRSTRLEN];
	log_warn("PROXY header: none within %d s of the connection from %s; closing",
		 PROXY_HEADER_TIMEOUT, peer_text(arg, from, sizeof from));
	proxy_wait_fail(arg);
}

/* Hands the connection, with the header consumed, to admit. */
static void proxy_wait_done(struct proxy_wait *pw, const struct proxy_header *hdr)
{
	unlink_wait(pw);
	const struct sockaddr *named = (struct sockaddr *)&pw->peer;
	socklen_t named_len = pw->peer_len;
	if (!hdr->local) {
		named = (const struct sockaddr *)&hdr->src;
		named_len = hdr->src_len;
	}
	pw->admit(pw->admit_arg, pw->cfg, pw->fd, (struct sockaddr *)&pw->peer, named, named_len);
	free(pw);
}

/* Edge-triggered: called again when more arrives, or when the client
 * closes; the peek then shows the same octets again, so ask the socket
 * whether anything more can come. */
static bool peer_has_closed(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLRDHUP};
	return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* The header is peeked at, and only its own octets are consumed, so what
 * follows (a TLS ClientHello on POP3S) stays in the socket for the session. */
static void on_readable(evutil_socket_t fd, short what, void *arg)
{
	struct proxy_wait *pw = arg;
	char buf[PROXY_HEADER_MAX];
	ssize_t n = recv(fd, buf, sizeof buf, MSG_PEEK);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		proxy_wait_fail(pw);
		return;
	}
	struct proxy_header hdr;
	enum proxy_status status = proxy_parse(buf, (size_t)n, &hdr);
	if (status == PROXY_NEED_MORE && (size_t)n < sizeof buf) {
		if (peer_has_closed(fd)) {
			char from[INET6_ADDRSTRLEN];
			log_warn("PROXY header refused: the connection from %s closed inside it",
				 peer_text(pw, from, sizeof from));
			proxy_wait_fail(pw);
		}
		return;
	}
	if (status != PROXY_DONE) {
		char from[INET6_ADDRSTRLEN];
		log_warn("PROXY header refused from %s: %s", peer_text(pw, from, sizeof from),
			 status == PROXY_ERROR ? hdr.reason : "too long");
		proxy_wait_fail(pw);
		return;
	}
	if (recv(fd, buf, hdr.header_len, 0) != (ssize_t)hdr.header_len) {
		proxy_wait_fail(pw);
		return;
	}
	proxy_wait_done(pw, &hdr);
}

void proxy_wait_start(struct proxy_wait **list, struct event_base *base, const struct config *cfg,
		      int fd, const struct sockaddr *peer, socklen_t peer_len,
		      proxy_admit_fn *admit, void *admit_arg)
{
	struct proxy_wait *pw = xcalloc(1, sizeof *pw);
	pw->cfg = cfg;
	pw->fd = fd;
	pw->peer_len = peer_len < sizeof pw->peer ? peer_len : sizeof pw->peer;
	memcpy(&pw->peer, peer, pw->peer_len);
	pw->admit = admit;
	pw->admit_arg = admit_arg;
	pw->list = list;
	pw->next = *list;
	if (pw->next != NULL)
		pw->next->prev = pw;
	*list = pw;
	pw->readable = event_new(base, fd, EV_READ | EV_PERSIST | EV_ET, on_readable, pw);
	pw->deadline = evtimer_new(base, on_deadline, pw);
	if (pw->readable == NULL || pw->deadline == NULL)
		log_fatal("libevent: cannot create the events of a PROXY header wait");
	struct timeval timeout = {PROXY_HEADER_TIMEOUT, 0};
	event_add(pw->deadline, &timeout);
	event_add(pw->readable, NULL);
}

void proxy_wait_close_all(struct proxy_wait **list)
{
	while (*list != NULL)
		proxy_wait_fail(*list);
}
