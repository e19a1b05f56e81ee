/* STLS (RFC 2595): a plain session goes on inside TLS. The handshake runs
 * on a handshake thread like a POP3S one (handoff.c), not on the I/O
 * thread that serves logged-in sessions; the session waits meanwhile, its
 * connection slot and limits kept, and then continues on its own loop
 * with a TLS bufferevent on the socket (so kernel TLS can apply to it as
 * to POP3S). */
#include "session.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "handoff.h"
#include "ioloop.h"
#include "log.h"
#include "tpops_limits.h"
#include "xalloc.h"

struct stls_job {
	struct session_job sj;
	struct tls_upgrade up;
	int fd;
};

void session_start_tls(struct session *s)
{
	/* Whatever came after STLS was sent in the clear: it must not be
	 * taken for commands inside TLS (the STARTTLS injection class).
	 * What comes from now on is the client's TLS handshake, left in the
	 * socket for the handshake thread. */
	struct evbuffer *in = bufferevent_get_input(s->bev);
	evbuffer_drain(in, evbuffer_get_length(in));
	bufferevent_disable(s->bev, EV_READ);
	if (s->peer_gone || s->input_eof) { /* no handshake to come */
		session_close(s, "client left at STLS");
		return;
	}
	/* on_write once everything said in the clear has left */
	bufferevent_setwatermark(s->bev, EV_WRITE, 0, 0);
	session_wait_enter(s, WAIT_TLS_FLUSH);
}

/* Milliseconds the handshake may take: one CommandTimeout, at most
 * TLS_HANDSHAKE_TIMEOUT as for POP3S, and no more than what is left of
 * the connection's time limit (ConnectionKeepTime). */
static int64_t handshake_limit_ms(struct session *s)
{
	int64_t limit = (int64_t)(s->cfg->command_timeout < TLS_HANDSHAKE_TIMEOUT
					  ? s->cfg->command_timeout
					  : TLS_HANDSHAKE_TIMEOUT) *
			1000;
	struct timeval end, now;
	if (event_pending(s->session_timer, EV_TIMEOUT, &end) &&
	    event_base_gettimeofday_cached(s->loop->base, &now) == 0) {
		int64_t left = ((int64_t)end.tv_sec - now.tv_sec) * 1000 +
			       ((int64_t)end.tv_usec - now.tv_usec) / 1000;
		if (left < limit)
			limit = left;
	}
	return limit;
}

static void stls_failed(struct session *s, struct stls_job *j, const char *why)
{
	if (j->up.h.ssl != NULL)
		SSL_free(j->up.h.ssl);
	ERR_clear_error();
	close(j->fd);
	s->peer_gone = true; /* nothing can be said any more, in the clear or not */
	session_discard_output(s);
	session_close(s, why);
}

/* Back on the session's loop. */
static void stls_finish(struct session_job *sj)
{
	struct stls_job *j = (struct stls_job *)sj;
	struct session *s = sj->session;
	if (j->up.result != HANDSHAKE_DONE) {
		if (j->up.result == HANDSHAKE_FAILED)
			log_info("from=%s session=%llu: STLS: %s", s->peer_text,
				 (unsigned long long)s->id, j->up.failure);
		stls_failed(s, j, j->up.failure);
		free(j);
		return;
	}
	struct bufferevent *tls = bufferevent_openssl_socket_new(
		s->loop->base, j->fd, j->up.h.ssl, BUFFEREVENT_SSL_OPEN, BEV_OPT_CLOSE_ON_FREE);
	if (tls == NULL) {
		log_error("from=%s: STLS: cannot set up TLS", s->peer_text);
		stls_failed(s, j, "STLS failed");
		free(j);
		return;
	}
	/* a client that closes without close_notify (most do after QUIT)
	 * is an end of input, not an error */
	bufferevent_openssl_set_allow_dirty_shutdown(tls, 1);
	s->tls = true;
	session_replace_bev(s, tls); /* the plain one no longer has the socket */
	free(j);
}

/* The session ended meanwhile (its time limit, a shutdown). */
static void stls_discard(struct session_job *sj)
{
	struct stls_job *j = (struct stls_job *)sj;
	stls_failed(sj->session, j, "closing during the TLS handshake");
	free(j);
}

void session_stls_flushed(struct session *s)
{
	struct stls_job *j = xcalloc(1, sizeof *j);
	j->fd = bufferevent_getfd(s->bev);
	/* the socket is the handshake thread's until the job is back: this
	 * loop neither watches nor closes it meanwhile */
	bufferevent_disable(s->bev, EV_READ | EV_WRITE);
	bufferevent_setfd(s->bev, -1);
	j->sj.finish = stls_finish;
	j->sj.discard = stls_discard;
	session_tls_handshake_begin(s, &j->sj);
	if (!handoff_tls_upgrade(&j->up, j->fd, handshake_limit_ms(s), &j->sj.job)) {
		/* as the handshake thread would have: back at the next turn */
		j->up.result = HANDSHAKE_FAILED;
		snprintf(j->up.failure, sizeof j->up.failure, "no handshake threads");
		ioloop_post(s->loop, &j->sj.job);
	}
}
