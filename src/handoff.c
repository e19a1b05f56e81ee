/* Accepted connections on their way to a session: the TLS handshake of a
 * POP3S connection on a handshake thread, then the session on the next I/O
 * loop in turn; and the handshakes of sessions after STLS on the same
 * threads. See handoff.h for why. */
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

/* A POP3S connection between accept and its session. */
struct arrival {
	struct handshake h; /* first: its job is also the one posted to the session's loop */
	const struct config *cfg;
	struct sockaddr_storage peer;
	socklen_t peer_len;
};

struct handshaker {
	struct ioloop *loop;
	struct handshake *pending; /* handshakes in progress on this thread */
	bool stopping;
	struct job shutdown_job;
};

static struct ioloop **serving;
static size_t nserving;
static struct handshaker *handshakers;
static size_t nhandshakers;
static atomic_uint next_serving, next_handshaker;

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the session's loop ---- */

static struct ioloop *serving_loop(void)
{
	return serving[atomic_fetch_add_explicit(&next_serving, 1, memory_order_relaxed) %
		       nserving];
}

static void arrival_start_session(struct job *job)
{
	struct arrival *a = (struct arrival *)job;
	if (a->h.ssl != NULL)
		session_start_established(job->loop, a->cfg, a->h.fd, (struct sockaddr *)&a->peer,
					  a->peer_len, a->h.ssl);
	else
		session_start(job->loop, a->cfg, a->h.fd, (struct sockaddr *)&a->peer, a->peer_len,
			      false);
	free(a);
}

static void post_to_loop(struct arrival *a, struct ioloop *loop)
{
	a->h.job.loop = loop;
	a->h.job.done = arrival_start_session;
	ioloop_post(loop, &a->h.job);
}

/* A connection that never became a session: everything it held goes. */
static void arrival_drop(struct arrival *a)
{
	if (a->h.ssl != NULL)
		SSL_free(a->h.ssl);
	ERR_clear_error();
	/* the slot first: a client that sees the close may connect again */
	conn_limit_release((struct sockaddr *)&a->peer);
	close(a->h.fd);
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

/* On the handshake thread. */
static void arrival_over(struct handshake *h, enum handshake_result result, const char *failure)
{
	struct arrival *a = (struct arrival *)h;
	if (result == HANDSHAKE_DONE) {
		post_to_loop(a, serving_loop());
		return;
	}
	if (result == HANDSHAKE_FAILED) {
		/* as a session that ends in its handshake always did: one line */
		char peer[64];
		log_info("disconnect: from=%s: %s", peer_text(a, peer, sizeof peer), failure);
	}
	arrival_drop(a);
}

/* ---- the handshake, on a handshake thread ---- */

static void pending_unlink(struct handshake *h)
{
	if (h->prev != NULL)
		h->prev->next = h->next;
	else
		h->hs->pending = h->next;
	if (h->next != NULL)
		h->next->prev = h->prev;
	h->prev = h->next = NULL;
}

static void handshake_over(struct handshake *h, enum handshake_result result,
			   const char *failure)
{
	if (h->hs != NULL)
		pending_unlink(h);
	h->hs = NULL;
	if (h->ev != NULL)
		event_free(h->ev);
	h->ev = NULL;
	ERR_clear_error();
	h->over(h, result, failure);
}

static void handshake_step(struct handshake *h);

static void on_handshake_event(evutil_socket_t fd, short what, void *arg)
{
	struct handshake *h = arg;
	if (what & EV_TIMEOUT) {
		char why[64];
		snprintf(why, sizeof why, "no TLS handshake within %d s", h->limit_s);
		handshake_over(h, HANDSHAKE_FAILED, why);
		return;
	}
	handshake_step(h);
}

/* Waits for the socket to be readable or writable, within the deadline.
 * One event per handshake, made at its first wait and reused. */
static void handshake_wait(struct handshake *h, short what)
{
	int64_t left = h->deadline_ms - now_ms();
	if (left < 0)
		left = 0;
	struct timeval tv = {(time_t)(left / 1000), (suseconds_t)(left % 1000) * 1000};
	if (h->ev == NULL || event_get_events(h->ev) != what) {
		if (h->ev != NULL)
			event_free(h->ev);
		h->ev = event_new(h->hs->loop->base, h->fd, what, on_handshake_event, h);
	}
	if (h->ev == NULL || event_add(h->ev, &tv) != 0)
		handshake_over(h, HANDSHAKE_FAILED, "TLS handshake: cannot watch the socket");
}

static void handshake_step(struct handshake *h)
{
	ERR_clear_error();
	int r = SSL_do_handshake(h->ssl);
	if (r == 1) {
		handshake_over(h, HANDSHAKE_DONE, NULL);
		return;
	}
	int e = SSL_get_error(h->ssl, r);
	if (e == SSL_ERROR_WANT_READ) {
		handshake_wait(h, EV_READ);
		return;
	}
	if (e == SSL_ERROR_WANT_WRITE) {
		handshake_wait(h, EV_WRITE);
		return;
	}
	char reason[256] = "the connection closed", why[300];
	unsigned long err = ERR_peek_error();
	if (err != 0)
		ERR_error_string_n(err, reason, sizeof reason);
	else if (e == SSL_ERROR_SYSCALL && errno != 0)
		snprintf(reason, sizeof reason, "%s", strerror(errno));
	snprintf(why, sizeof why, "TLS handshake failed: %s", reason);
	handshake_over(h, HANDSHAKE_FAILED, why);
}

/* On the handshake thread: the ClientHello is often there already. */
static void handshake_begin(struct job *job)
{
	struct handshake *h = (struct handshake *)job;
	struct handshaker *hs = h->hs;
	if (hs->stopping) {
		h->hs = NULL;
		h->over(h, HANDSHAKE_STOPPED, "the server is shutting down");
		return;
	}
	h->next = hs->pending;
	if (h->next != NULL)
		h->next->prev = h;
	hs->pending = h;
	/* made here, not on the I/O loop that accepted the connection */
	h->ssl = tls_session_new();
	if (h->ssl == NULL || SSL_set_fd(h->ssl, h->fd) != 1) {
		log_error("TLS: cannot set up a connection (no certificate loaded?)");
		handshake_over(h, HANDSHAKE_FAILED, "TLS: no context");
		return;
	}
	SSL_set_accept_state(h->ssl);
	handshake_step(h);
}

/* From any thread: h->fd, h->deadline_ms, h->limit_s and h->over are
 * set; the SSL is made on the handshake thread. */
static void handshake_post(struct handshake *h)
{
	h->hs = &handshakers[atomic_fetch_add_explicit(&next_handshaker, 1, memory_order_relaxed) %
			     nhandshakers];
	h->job.loop = h->hs->loop;
	h->job.done = handshake_begin;
	ioloop_post(h->job.loop, &h->job);
}

/* On the handshake thread: an STLS handshake's result goes back to its
 * session's loop. */
static void upgrade_over(struct handshake *h, enum handshake_result result, const char *failure)
{
	struct tls_upgrade *u = (struct tls_upgrade *)h;
	u->result = result;
	snprintf(u->failure, sizeof u->failure, "%s", failure != NULL ? failure : "");
	ioloop_post(u->back->loop, u->back);
}

/* A handshake thread makes way for the I/O threads when both want the
 * CPU (Linux: the nice value is per thread): it goes to TLS_HANDSHAKE_NICE,
 * also in a daemon started under `nice` (and never asks to be raised,
 * which it may not do once it has dropped root). */
static void handshaker_lower_priority(struct job *job)
{
	free(job);
	errno = 0;
	int now = getpriority(PRIO_PROCESS, (id_t)gettid());
	if (now == -1 && errno != 0) {
		log_warn("TLS handshake thread: cannot read its priority: %s", strerror(errno));
		return;
	}
	if (now < TLS_HANDSHAKE_NICE &&
	    setpriority(PRIO_PROCESS, (id_t)gettid(), TLS_HANDSHAKE_NICE) != 0)
		log_warn("TLS handshake thread: cannot lower its priority: %s", strerror(errno));
}

static void handshaker_shutdown(struct job *job)
{
	struct handshaker *hs = (struct handshaker *)((char *)job -
						     offsetof(struct handshaker, shutdown_job));
	hs->stopping = true;
	while (hs->pending != NULL)
		handshake_over(hs->pending, HANDSHAKE_STOPPED, "the server is shutting down");
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
	a->h.fd = fd;
	a->peer_len = addrlen < sizeof a->peer ? addrlen : (socklen_t)sizeof a->peer;
	memcpy(&a->peer, addr, a->peer_len);
	if (!tls) {
		post_to_loop(a, loop);
		return;
	}
	/* as in a session (one CommandTimeout), and never longer than this */
	a->h.limit_s = cfg->command_timeout < TLS_HANDSHAKE_TIMEOUT ? cfg->command_timeout
								    : TLS_HANDSHAKE_TIMEOUT;
	a->h.deadline_ms = now_ms() + (int64_t)a->h.limit_s * 1000;
	a->h.over = arrival_over;
	handshake_post(&a->h);
}

bool handoff_tls_upgrade(struct tls_upgrade *u, int fd, int64_t limit_ms, struct job *back)
{
	if (nhandshakers == 0)
		return false;
	memset(&u->h, 0, sizeof u->h);
	u->h.fd = fd;
	u->h.deadline_ms = now_ms() + (limit_ms > 0 ? limit_ms : 0);
	u->h.limit_s = (int)((limit_ms + 999) / 1000);
	u->h.over = upgrade_over;
	u->back = back;
	u->result = HANDSHAKE_FAILED;
	u->failure[0] = '\0';
	handshake_post(&u->h);
	return true;
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
