/* Accepted connections on their way to a session: the TLS handshake of a
 * POP3S connection on a handshake thread, then the session on the next I/O
 * loop in turn. See handoff.h for why. */
#include "handoff.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "conn_limit.h"
#include "ioloop.h"
#include "log.h"
#include "session.h"
#include "tls.h"
#include "tpops_limits.h"
#include "worker.h"
#include "xalloc.h"

/* One connection between accept and its session. */
struct arrival {
	struct job job; /* posted to the loop that takes the next step */
	const struct config *cfg;
	int fd;
	struct sockaddr_storage peer;
	socklen_t peer_len;
	SSL *ssl;
	struct event *ev;
	time_t deadline;
	int limit; /* seconds from the start of the handshake to the deadline */
	struct handshaker *hs;
	struct arrival *prev, *next; /* in hs->pending */
};

struct handshaker {
	struct ioloop *loop;
	struct arrival *pending; /* handshakes in progress on this thread */
	bool stopping;
	struct job shutdown_job;
};

static struct ioloop **serving;
static size_t nserving;
static struct handshaker *handshakers;
static size_t nhandshakers;
static atomic_uint next_serving, next_handshaker;

/* ---- the session's loop ---- */

static struct ioloop *serving_loop(void)
{
	return serving[atomic_fetch_add_explicit(&next_serving, 1, memory_order_relaxed) %
		       nserving];
}

static void arrival_start_session(struct job *job)
{
	struct arrival *a = (struct arrival *)job;
	if (a->ssl != NULL)
		session_start_established(job->loop, a->cfg, a->fd, (struct sockaddr *)&a->peer,
					  a->peer_len, a->ssl);
	else
		session_start(job->loop, a->cfg, a->fd, (struct sockaddr *)&a->peer, a->peer_len,
			      false);
	free(a);
}

static void post_to_loop(struct arrival *a, struct ioloop *loop)
{
	a->job.loop = loop;
	a->job.done = arrival_start_session;
	ioloop_post(loop, &a->job);
}

/* ---- the handshake ---- */

static void pending_unlink(struct arrival *a)
{
	if (a->prev != NULL)
		a->prev->next = a->next;
	else
		a->hs->pending = a->next;
	if (a->next != NULL)
		a->next->prev = a->prev;
	a->prev = a->next = NULL;
}

/* A connection that never became a session: everything it held goes. */
static void arrival_drop(struct arrival *a)
{
	if (a->hs != NULL)
		pending_unlink(a);
	if (a->ev != NULL)
		event_free(a->ev);
	if (a->ssl != NULL)
		SSL_free(a->ssl);
	ERR_clear_error();
	/* the slot first: a client that sees the close may connect again */
	conn_limit_release((struct sockaddr *)&a->peer);
	close(a->fd);
	config_release(a->cfg);
	free(a);
}

static const char *peer_text(const struct arrival *a, char *out, size_t size)
{
	const struct sockaddr *sa = (const struct sockaddr *)&a->peer;
	snprintf(out, size, "local");
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, size);
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, size);
	return out;
}

static void handshake_step(struct arrival *a);

static void on_handshake_event(evutil_socket_t fd, short what, void *arg)
{
	struct arrival *a = arg;
	if (what & EV_TIMEOUT) {
		char peer[64];
		log_info("disconnect: from=%s: no TLS handshake within %d s",
			 peer_text(a, peer, sizeof peer), a->limit);
		arrival_drop(a);
		return;
	}
	handshake_step(a);
}

/* Waits for the socket to be readable or writable, within the deadline. */
static void handshake_wait(struct arrival *a, short what)
{
	time_t left = a->deadline - time(NULL);
	struct timeval tv = {left > 0 ? left : 0, 0};
	if (a->ev != NULL)
		event_free(a->ev);
	a->ev = event_new(a->hs->loop->base, a->fd, what, on_handshake_event, a);
	if (a->ev == NULL || event_add(a->ev, &tv) != 0) {
		log_error("TLS handshake: cannot watch the socket");
		arrival_drop(a);
	}
}

static void handshake_step(struct arrival *a)
{
	ERR_clear_error();
	int r = SSL_do_handshake(a->ssl);
	if (r == 1) {
		pending_unlink(a);
		a->hs = NULL;
		if (a->ev != NULL)
			event_free(a->ev);
		a->ev = NULL;
		post_to_loop(a, serving_loop());
		return;
	}
	int e = SSL_get_error(a->ssl, r);
	if (e == SSL_ERROR_WANT_READ) {
		handshake_wait(a, EV_READ);
		return;
	}
	if (e == SSL_ERROR_WANT_WRITE) {
		handshake_wait(a, EV_WRITE);
		return;
	}
	/* as a session that ends in its handshake always did: one line */
	char peer[64], reason[256] = "the connection closed";
	unsigned long err = ERR_peek_error();
	if (err != 0)
		ERR_error_string_n(err, reason, sizeof reason);
	else if (e == SSL_ERROR_SYSCALL && errno != 0)
		snprintf(reason, sizeof reason, "%s", strerror(errno));
	log_info("disconnect: from=%s: TLS handshake failed: %s", peer_text(a, peer, sizeof peer),
		 reason);
	arrival_drop(a);
}

/* On the handshake thread. */
static void arrival_begin_handshake(struct job *job)
{
	struct arrival *a = (struct arrival *)job;
	struct handshaker *hs = a->hs;
	if (hs->stopping) {
		a->hs = NULL;
		arrival_drop(a);
		return;
	}
	a->next = hs->pending;
	if (a->next != NULL)
		a->next->prev = a;
	hs->pending = a;
	a->ssl = tls_session_new();
	if (a->ssl == NULL || SSL_set_fd(a->ssl, a->fd) != 1) {
		log_error("TLS: cannot set up a connection (no certificate loaded?)");
		arrival_drop(a);
		return;
	}
	SSL_set_accept_state(a->ssl);
	/* as in a session (one CommandTimeout), and never longer than this */
	a->limit = a->cfg->command_timeout < TLS_HANDSHAKE_TIMEOUT ? a->cfg->command_timeout
								  : TLS_HANDSHAKE_TIMEOUT;
	a->deadline = time(NULL) + a->limit;
	handshake_step(a); /* the ClientHello is often there already */
}

/* A handshake thread makes way for the I/O threads when both want the
 * CPU (Linux: the nice value is per thread). */
static void handshaker_lower_priority(struct job *job)
{
	free(job);
	errno = 0;
	if (setpriority(PRIO_PROCESS, (id_t)gettid(), TLS_HANDSHAKE_NICE) != 0)
		log_warn("TLS handshake thread: cannot lower its priority: %s", strerror(errno));
}

static void handshaker_shutdown(struct job *job)
{
	struct handshaker *hs = (struct handshaker *)((char *)job -
						     offsetof(struct handshaker, shutdown_job));
	hs->stopping = true;
	while (hs->pending != NULL)
		arrival_drop(hs->pending);
}

/* ---- public ---- */

void handoff_start(struct ioloop **loops, size_t nloops)
{
	serving = loops;
	nserving = nloops;
	nhandshakers = nloops;
	handshakers = xcalloc(nhandshakers, sizeof *handshakers);
	for (size_t i = 0; i < nhandshakers; i++) {
		handshakers[i].loop = ioloop_new((unsigned)(nloops + i));
		struct job *nice = xcalloc(1, sizeof *nice);
		nice->done = handshaker_lower_priority;
		ioloop_post(handshakers[i].loop, nice);
		ioloop_start_thread(handshakers[i].loop);
	}
}

void handoff_connection(struct ioloop *here, const struct config *cfg, int fd,
			const struct sockaddr *addr, socklen_t addrlen, bool tls)
{
	if (nserving == 0 || (tls && nhandshakers == 0)) { /* not started: serve it here */
		session_start(here, cfg, fd, addr, addrlen, tls);
		return;
	}
	struct ioloop *loop = NULL;
	if (!tls) {
		loop = serving_loop(); /* this connection's turn */
		if (loop == here) {
			session_start(here, cfg, fd, addr, addrlen, false);
			return;
		}
	}
	struct arrival *a = xcalloc(1, sizeof *a);
	a->cfg = cfg;
	a->fd = fd;
	a->peer_len = addrlen < sizeof a->peer ? addrlen : (socklen_t)sizeof a->peer;
	memcpy(&a->peer, addr, a->peer_len);
	if (!tls) {
		post_to_loop(a, loop);
		return;
	}
	a->hs = &handshakers[atomic_fetch_add_explicit(&next_handshaker, 1, memory_order_relaxed) %
			     nhandshakers];
	a->job.loop = a->hs->loop;
	a->job.done = arrival_begin_handshake;
	ioloop_post(a->job.loop, &a->job);
}

void handoff_shutdown(void)
{
	for (size_t i = 0; i < nhandshakers; i++) {
		handshakers[i].shutdown_job.done = handshaker_shutdown;
		ioloop_post(handshakers[i].loop, &handshakers[i].shutdown_job);
	}
}

void handoff_stop(void)
{
	for (size_t i = 0; i < nhandshakers; i++)
		ioloop_stop(handshakers[i].loop);
	for (size_t i = 0; i < nhandshakers; i++) {
		ioloop_join(handshakers[i].loop);
		ioloop_free(handshakers[i].loop);
	}
	free(handshakers);
	handshakers = NULL;
	nhandshakers = 0;
	serving = NULL;
	nserving = 0;
}
