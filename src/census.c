/* Questions about the sessions, asked of every I/O thread: each answers
 * about its own sessions on its own thread, while the asker waits. */
#include "census.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "ioloop.h"
#include "session.h"
#include "xalloc.h"

static struct ioloop *const *census_loops;
static size_t census_nloops;

void census_set_loops(struct ioloop *const *loops, size_t n)
{
	census_loops = loops;
	census_nloops = n;
}

/* What one loop found; written on that loop's thread, read by the asker
 * once `answered` is set (under the request's mutex). */
struct census_part {
	struct census_request *req;
	struct ioloop *loop;
	uint64_t sessions[SESSION_STATES];
	struct census_row *rows;
	size_t nrows, cap;
	bool answered;
};

struct census_request {
	enum census_action action;
	char *login;
	uint64_t *ids;
	size_t nids;
	pthread_mutex_t mutex;
	pthread_cond_t cond;
	unsigned pending; /* loops yet to answer */
	unsigned refs;    /* the asker and each loop asked */
	size_t nparts;
	struct census_part parts[];
};

/* Under req->mutex; unlocks it. The last holder frees the request: a loop
 * that answers after the asker gave up still writes into live memory. */
static void request_release_locked(struct census_request *req)
{
	bool last = --req->refs == 0;
	pthread_mutex_unlock(&req->mutex);
	if (!last)
		return;
	for (size_t i = 0; i < req->nparts; i++)
		free(req->parts[i].rows);
	pthread_mutex_destroy(&req->mutex);
	pthread_cond_destroy(&req->cond);
	free(req->login);
	free(req->ids);
	free(req);
}

/* ---- on each I/O thread ---- */

static enum metric_session_state state_of(const struct session *s)
{
	if (s->closing)
		return SESSION_CLOSING;
	switch (s->wait) {
	case WAIT_LOGIN_HOLD: /* held before the check: a login delay too */
	case WAIT_AUTH_DELAY:
		return SESSION_LOGIN_DELAY;
	case WAIT_STREAM:
	case WAIT_OUTPUT:
		return SESSION_STREAMING;
	case WAIT_JOB:
		return SESSION_WAITING_STORAGE;
	case WAIT_TLS_FLUSH: /* STLS: counted in its state (AUTHORIZATION) */
	case WAIT_TLS_HANDSHAKE:
	case WAIT_NONE:
		break;
	}
	switch (s->state) {
	case STATE_AUTHORIZATION:
		return SESSION_AUTHORIZATION;
	case STATE_TRANSACTION:
		return SESSION_TRANSACTION;
	case STATE_UPDATE:
		break;
	}
	return SESSION_WAITING_STORAGE; /* the commit at QUIT */
}

/* Octets sent to the client: the kernel counts them, so the session path
 * counts nothing. 0 when the connection is not TCP. tcpi_bytes_sent
 * (Linux 4.19) counts what left even if the client has not acknowledged
 * it yet (delayed ACKs); older kernels give what was acknowledged. */
static uint64_t octets_sent(struct session *s)
{
	struct bufferevent *bev = s->bev;
	while (bufferevent_get_underlying(bev) != NULL)
		bev = bufferevent_get_underlying(bev);
	evutil_socket_t fd = bufferevent_getfd(bev);
	struct tcp_info info;
	socklen_t len = sizeof info;
	memset(&info, 0, sizeof info);
	if (fd < 0 || getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0)
		return 0;
	if (len >= offsetof(struct tcp_info, tcpi_bytes_sent) + sizeof info.tcpi_bytes_sent)
		return info.tcpi_bytes_sent;
	return info.tcpi_bytes_acked;
}

static void add_row(struct census_part *part, struct session *s)
{
	if (part->nrows == part->cap) {
		part->cap = part->cap ? 2 * part->cap : 16;
		part->rows = xrealloc(part->rows, part->cap * sizeof *part->rows);
	}
	struct census_row *row = &part->rows[part->nrows++];
	memset(row, 0, sizeof *row);
	row->id = s->id;
	snprintf(row->login, sizeof row->login, "%s", s->user.login ? s->user.login : "");
	snprintf(row->peer, sizeof row->peer, "%s", s->peer_text);
	row->state = state_of(s);
	row->since = s->started;
	row->messages = s->messages;
	row->retrieved = s->retr_count;
	row->octets_sent = octets_sent(s);
	row->tls = s->tls;
	row->thread = s->loop->index;
}

static bool wanted_id(const struct census_request *req, uint64_t id)
{
	for (size_t i = 0; i < req->nids; i++)
		if (req->ids[i] == id)
			return true;
	return false;
}

/* tpops-admin kick: the session ends as after a timeout; its lock is
 * released on the way out and nothing is deleted. A session committing
 * its QUIT, or already leaving, is left to finish. */
static void kick(struct session *s)
{
	if (s->closing || s->state == STATE_UPDATE)
		return;
	if (s->wait != WAIT_STREAM) /* no text inside a message */
		reply_err(s, "[SYS/TEMP] Session ended by the administrator");
	session_close(s, "ended by the administrator (tpops-admin kick)");
}

/* A loop is done with the request (answered, or could not be asked). */
static void part_done(struct census_part *part, bool answered)
{
	struct census_request *req = part->req;
	pthread_mutex_lock(&req->mutex);
	part->answered = answered;
	if (--req->pending == 0)
		pthread_cond_signal(&req->cond);
	request_release_locked(req);
}

static void on_loop(evutil_socket_t fd, short what, void *arg)
{
	struct census_part *part = arg;
	struct census_request *req = part->req;
	for (struct session *s = part->loop->sessions, *next; s != NULL; s = next) {
		next = s->next; /* a kicked session may be freed */
		part->sessions[state_of(s)]++;
		bool logged_in = s->user.login != NULL;
		switch (req->action) {
		case CENSUS_COUNT:
			break;
		case CENSUS_LIST:
			if (logged_in)
				add_row(part, s);
			break;
		case CENSUS_KICK:
			if (logged_in && strcmp(s->user.login, req->login) == 0) {
				add_row(part, s);
				kick(s);
			}
			break;
		case CENSUS_FIND:
			if (wanted_id(req, s->id))
				add_row(part, s);
			break;
		}
	}
	part_done(part, true);
}

/* ---- the asker ---- */

struct census *census_take(enum census_action action, const char *login, const uint64_t *ids,
			   size_t nids, int timeout_ms)
{
	size_t n = census_nloops;
	struct census_request *req = xcalloc(1, sizeof *req + n * sizeof req->parts[0]);
	req->action = action;
	req->login = login ? xstrdup(login) : NULL;
	req->ids = nids ? xmemdup(ids, nids * sizeof *ids) : NULL;
	req->nids = nids;
	pthread_mutex_init(&req->mutex, NULL);
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&req->cond, &attr);
	pthread_condattr_destroy(&attr);
	req->nparts = n;
	req->pending = (unsigned)n;
	req->refs = (unsigned)n + 1;
	static const struct timeval now = {0, 0};
	for (size_t i = 0; i < n; i++) {
		req->parts[i].req = req;
		req->parts[i].loop = census_loops[i];
		if (event_base_once(census_loops[i]->base, -1, EV_TIMEOUT, on_loop, &req->parts[i],
				    &now) != 0)
			part_done(&req->parts[i], false);
	}

	struct timespec deadline;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += timeout_ms / 1000;
	deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	struct census *c = xcalloc(1, sizeof *c);
	c->loops = (unsigned)n;
	pthread_mutex_lock(&req->mutex);
	while (req->pending > 0)
		if (pthread_cond_timedwait(&req->cond, &req->mutex, &deadline) != 0)
			break; /* a loop is stuck: report the others */
	size_t total = 0;
	for (size_t i = 0; i < n; i++)
		if (req->parts[i].answered)
			total += req->parts[i].nrows;
	c->rows = xcalloc(total ? total : 1, sizeof *c->rows);
	for (size_t i = 0; i < n; i++) {
		struct census_part *part = &req->parts[i];
		if (!part->answered)
			continue;
		c->answered++;
		for (int k = 0; k < SESSION_STATES; k++)
			c->sessions[k] += part->sessions[k];
		if (part->nrows > 0)
			memcpy(c->rows + c->nrows, part->rows, part->nrows * sizeof *part->rows);
		c->nrows += part->nrows;
	}
	request_release_locked(req);
	return c;
}

void census_free(struct census *c)
{
	if (c != NULL)
		free(c->rows);
	free(c);
}
