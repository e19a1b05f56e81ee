/* A session's jobs, waits and end: the rules are in session_life.h. */
#include "session_life.h"

#include <assert.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>

#include "ioloop.h"
#include "log.h"
#include "session.h"

void session_assert_owner(const struct session *s)
{
	assert(pthread_equal(pthread_self(), s->loop->runner));
	(void)s;
}

/* ---- waits ---- */

/* The idle timer does not run: the session waits for the server's work,
 * or for an STLS handshake, which has a deadline of its own. */
static bool server_works(enum session_wait w)
{
	return w == WAIT_JOB || w == WAIT_LOGIN_HOLD || w == WAIT_AUTH_DELAY ||
	       w == WAIT_TLS_HANDSHAKE;
}

static void wait_enter(struct session *s, enum session_wait w)
{
	assert(s->wait == WAIT_NONE || s->wait == w); /* one wait at a time */
	s->wait = w;
	/* The idle timer measures the client, not the server: it does not
	 * run while the session waits for its own work (a slow job, the
	 * login delay). */
	if (server_works(w))
		evtimer_del(s->command_timer);
}

static void wait_leave(struct session *s)
{
	if (server_works(s->wait) && !s->closing)
		session_command_timer_reset(s);
	s->wait = WAIT_NONE;
}

void session_wait_enter(struct session *s, enum session_wait w)
{
	assert(w == WAIT_STREAM || w == WAIT_OUTPUT || w == WAIT_TLS_FLUSH);
	wait_enter(s, w);
}

void session_resume(struct session *s)
{
	session_assert_owner(s);
	wait_leave(s);
	session_process(s);
}

/* ---- jobs ---- */

static void job_run(struct job *job)
{
	struct session_job *sj = (struct session_job *)job;
	sj->work(sj);
}

static void job_done(struct job *job)
{
	struct session_job *sj = (struct session_job *)job;
	struct session *s = sj->session;
	session_assert_owner(s);
	assert(s->jobs > 0);
	/* The wait for a blocking job is over before its finish, which may
	 * go on into another (a failed login into its delay, a SASL lookup
	 * into the login job). */
	bool blocking = sj->blocking;
	if (blocking) {
		assert(s->wait == WAIT_JOB || s->wait == WAIT_TLS_HANDSHAKE);
		s->wait = WAIT_NONE;
	}
	if (s->closing && sj->discard != NULL)
		sj->discard(sj); /* nobody waits for its results */
	else
		sj->finish(sj); /* frees sj; may close the session or wait again */
	s->jobs--;
	/* then the commands that came meanwhile run: no finish has to
	 * remember to resume reading */
	if (blocking && s->wait == WAIT_NONE && !s->closing) {
		session_command_timer_reset(s);
		session_process(s);
	} else {
		session_maybe_free(s);
	}
}

static void job_init(struct session *s, struct session_job *sj)
{
	sj->session = s;
	sj->job.run = job_run;
	sj->job.done = job_done;
	sj->job.loop = s->loop;
	s->jobs++;
}

void session_submit(struct session *s, struct session_job *sj, bool blocking)
{
	session_assert_owner(s);
	assert(!s->closing || sj->discard == NULL); /* a closing session starts only what must end */
	job_init(s, sj);
	sj->blocking = blocking;
	if (blocking)
		wait_enter(s, WAIT_JOB);
	worker_submit(&sj->job);
}

void session_tls_handshake_begin(struct session *s, struct session_job *sj)
{
	session_assert_owner(s);
	assert(s->wait == WAIT_TLS_FLUSH && !s->closing);
	s->wait = WAIT_NONE;
	job_init(s, sj);
	sj->blocking = true;
	wait_enter(s, WAIT_TLS_HANDSHAKE);
}

void session_finish_here(struct session *s, struct session_job *sj)
{
	session_assert_owner(s);
	job_init(s, sj);
	sj->blocking = false;
	ioloop_post(s->loop, &sj->job);
}

/* ---- the login hold and the failed-login delay ---- */

void session_hold_enter(struct session *s, void (*cancel)(struct session *s))
{
	session_assert_owner(s);
	s->hold_cancel = cancel;
	wait_enter(s, WAIT_LOGIN_HOLD);
}

void session_hold_leave(struct session *s)
{
	assert(s->wait == WAIT_LOGIN_HOLD);
	s->hold_cancel = NULL;
	wait_leave(s);
}

void session_delay(struct session *s, long ms, void (*over)(struct session *s))
{
	session_assert_owner(s);
	s->delay_over = over;
	wait_enter(s, WAIT_AUTH_DELAY);
	if (ms < 0)
		ms = 0;
	struct timeval tv = {ms / 1000, (suseconds_t)(ms % 1000) * 1000};
	evtimer_add(s->delay_timer, &tv);
}

void session_delay_timer(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	assert(s->wait == WAIT_AUTH_DELAY && !s->closing);
	s->delay_over(s);
	session_resume(s);
}

/* What only the client was waited for ends with the session: the delay's
 * answer is not sent, the held login is not checked. */
static void cancel_timed_waits(struct session *s)
{
	evtimer_del(s->delay_timer);
	if (s->hold_cancel != NULL) {
		void (*cancel)(struct session *s) = s->hold_cancel;
		s->hold_cancel = NULL;
		cancel(s);
	}
}

/* ---- the end ---- */

void session_discard_output(struct session *s)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	evbuffer_drain(out, evbuffer_get_length(out));
}

void session_input_ended(struct session *s)
{
	session_assert_owner(s);
	s->input_eof = true;
	if (s->peer_gone)
		session_discard_output(s);
	if (s->closing) {
		session_maybe_free(s);
		return;
	}
	switch (s->wait) {
	case WAIT_NONE:
		session_process(s); /* the commands sent before, then the end */
		break;
	case WAIT_JOB:
	case WAIT_TLS_HANDSHAKE:
		break; /* back soon: then the commands sent before, then the end */
	case WAIT_TLS_FLUSH: /* no handshake without the client */
		s->wait = WAIT_NONE;
		session_close(s, "client left before the TLS handshake");
		break;
	case WAIT_LOGIN_HOLD:
	case WAIT_AUTH_DELAY:
		session_close(s, "client left during the login delay");
		break;
	case WAIT_STREAM:
	case WAIT_OUTPUT:
		/* Half-closed, the client may still be reading (a script that
		 * sends its commands and shuts down its side): a write error
		 * or the idle timer tells when it is not. Gone, it will never
		 * read what the session waits to send. */
		if (!s->peer_gone)
			break;
		if (s->wait == WAIT_STREAM)
			pop3_stream_abandon(s);
		s->wait = WAIT_NONE;
		session_process(s);
		break;
	}
}

void session_close(struct session *s, const char *reason)
{
	session_assert_owner(s);
	if (s->closing)
		return;
	log_debug("session %llu: closing: %s", (unsigned long long)s->id, reason);
	s->closing = true;
	cancel_timed_waits(s);
	bufferevent_disable(s->bev, EV_READ);
	bufferevent_setwatermark(s->bev, EV_WRITE, 0, 0); /* on_write when all is sent */
	/* A client that reads nothing more (stalled in a RETR) would keep a
	 * closing session, its connection slot and its output forever: after
	 * one more CommandTimeout on_command_timeout gives up on sending. */
	session_command_timer_reset(s);
	session_maybe_free(s);
}

/* Frees the session once nothing holds it. Runs only from its own event
 * (session_maybe_free activates it), never inside a command handler or a
 * callback that may still touch the session after closing it. */
static void session_finish(struct session *s)
{
	if (!s->closing || s->jobs > 0 || s->processing > 0)
		return;
	if (s->locked) {
		pop3_release_lock(s); /* a job: back here when it is done */
		return;
	}
	if (!s->peer_gone && evbuffer_get_length(bufferevent_get_output(s->bev)) > 0)
		return; /* on_write calls again once the last reply is sent */
	/* TLS ends with close_notify after the last reply: a client that
	 * waits for it (openssl s_client) would take a bare close for an
	 * attack. */
	if (s->tls && !s->tls_closed && !s->peer_gone) {
		s->tls_closed = true;
		SSL *ssl = bufferevent_openssl_get_ssl(s->bev);
		if (ssl != NULL && SSL_is_init_finished(ssl)) {
			SSL_shutdown(ssl);
			ERR_clear_error();
		}
	}
	assert(s->jobs == 0 && s->hold_cancel == NULL);
	session_free(s);
}

void session_maybe_free(struct session *s)
{
	if (s->closing && s->jobs == 0 && s->processing == 0)
		event_active(s->flush_timer, EV_TIMEOUT, 1);
}

void session_flush_check(evutil_socket_t fd, short what, void *arg)
{
	session_finish(arg);
}

/* ---- timeouts ---- */

/* False while a TLS handshake is not done (or, after STLS, about to
 * start): nothing can be sent then. */
static bool can_send(struct session *s)
{
	if (s->peer_gone || s->wait == WAIT_TLS_FLUSH || s->wait == WAIT_TLS_HANDSHAKE)
		return false;
	if (!s->tls)
		return true;
	SSL *ssl = bufferevent_openssl_get_ssl(s->bev);
	return ssl == NULL || SSL_is_init_finished(ssl);
}

/* Ends a session whose time is up: with -ERR when the client reads and is
 * between commands; without a word, and without waiting any longer for a
 * client that reads nothing (in the middle of a message, or of a TLS
 * handshake, where text cannot go), else. */
static void time_up(struct session *s, const char *text, const char *reason)
{
	bool stalled = s->wait == WAIT_STREAM || s->wait == WAIT_OUTPUT;
	if (!can_send(s) || stalled) {
		s->peer_gone = true;
		session_discard_output(s);
	} else {
		reply_err(s, "%s", text);
	}
	session_close(s, reason);
}

void session_command_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	if (s->closing) { /* the client does not read our last words */
		s->peer_gone = true;
		session_maybe_free(s);
		return;
	}
	if (server_works(s->wait))
		return; /* not idle: the timer was stopped for this (a race) */
	time_up(s, "Disconnected for inactivity", "command timeout");
}

void session_keep_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	if (s->closing || s->state == STATE_UPDATE)
		return; /* leaving already, or committing its QUIT */
	time_up(s, "Connection time limit reached, closing connection",
		"connection time limit (ConnectionKeepTime)");
}
