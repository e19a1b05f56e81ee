/* One POP3 connection: socket I/O, line reading, dispatch, start and
 * free (its jobs, waits and end are session_life.c's). */
#include "session.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn_limit.h"
#include "ioloop.h"
#include "tpops_limits.h"
#include "log.h"
#include "sasl.h"
#include "tls.h"
#include "worker.h"
#include "xalloc.h"

static uint64_t session_counter;


/* ---- replies ---- */

static void reply(struct session *s, const char *status, const char *fmt, va_list ap)
{
	if (s->closing || s->peer_gone)
		return;
	struct evbuffer *out = bufferevent_get_output(s->bev);
	evbuffer_add(out, status, strlen(status));
	evbuffer_add_vprintf(out, fmt, ap);
	evbuffer_add(out, "\r\n", 2);
}

void reply_ok(struct session *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	reply(s, "+OK ", fmt, ap);
	va_end(ap);
	s->bad_commands = 0;
}

void reply_err(struct session *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	reply(s, "-ERR ", fmt, ap);
	va_end(ap);
	if (++s->bad_commands >= POP3_MAX_BAD_COMMANDS && !s->closing) {
		evbuffer_add_printf(bufferevent_get_output(s->bev),
				    "-ERR Too many bad commands, closing connection\r\n");
		session_close(s, "too many bad commands");
	}
}

void reply_raw(struct session *s, const char *data, size_t len)
{
	if (!s->closing && !s->peer_gone)
		evbuffer_add(bufferevent_get_output(s->bev), data, len);
}

/* ---- timers ---- */

void session_command_timer_reset(struct session *s)
{
	/* The loop's shared (common) timeout holds the CommandTimeout of the
	 * start-up configuration; a session under a reloaded configuration
	 * with another value has its own. */
	const struct timeval *common = s->loop->command_timeout;
	if (common != NULL && common->tv_sec == s->cfg->command_timeout) {
		evtimer_add(s->command_timer, common);
	} else {
		struct timeval tv = {s->cfg->command_timeout, 0};
		evtimer_add(s->command_timer, &tv);
	}
}

/* ---- input ---- */

/* Takes the next complete command line out of the input. Returns 1 with
 * the line (CRLF removed), 0 when no complete line is there, -1 when an
 * overlong line was dropped (its -ERR is already queued). */
static int next_line(struct session *s, char *line, size_t *len_r)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	/* SASL responses may be longer than commands (RFC 5034 section 4) */
	size_t max = s->sasl_waiting ? SASL_MAX_RESPONSE : POP3_MAX_LINE;
	size_t eol_len = 0;
	struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
	if (eol.pos < 0) {
		size_t avail = evbuffer_get_length(in);
		if (s->discarding || avail > max) {
			/* an overlong line: drop what came so far, keep memory flat */
			s->discarding = true;
			s->junk += avail;
			evbuffer_drain(in, avail);
			if (s->junk > POP3_MAX_JUNK) {
				reply_err(s, "Line too long, closing connection");
				session_close(s, "line without end over the junk limit");
				return -1;
			}
		}
		return 0;
	}
	size_t n = (size_t)eol.pos;
	if (s->discarding || n > max) {
		evbuffer_drain(in, n + 1);
		s->discarding = false;
		s->junk = 0;
		if (s->sasl_waiting) {
			/* the -ERR ends the AUTH exchange (RFC 5034): the next
			 * line is a command, not a response */
			sasl_free(s->sasl);
			s->sasl = NULL;
			s->sasl_waiting = false;
		}
		reply_err(s, "Line too long");
		return -1;
	}
	evbuffer_remove(in, line, n + 1);
	if (n > 0 && line[n - 1] == '\r')
		n--;
	line[n] = '\0';
	*len_r = n;
	return 1;
}

static void trace_command(struct session *s, const struct pop3_command *c, const char *line,
			  size_t len)
{
	if (!log_debug_enabled())
		return;
	/* never log secrets: PASS, and APOP/AUTH arguments */
	if (c->cmd == CMD_PASS || c->cmd == CMD_AUTH || c->cmd == CMD_APOP)
		log_debug("session %llu: <- %s ***", (unsigned long long)s->id,
			  pop3_cmd_name(c->cmd));
	else {
		/* the client's line, escaped: it cannot forge a log line */
		char text[LOG_FIELD_SIZE * 2];
		log_debug("session %llu: <- %s", (unsigned long long)s->id,
			  log_field(text, sizeof text, line, len));
	}
}

static void session_handle_line(struct session *s, const char *line, size_t len)
{
	if (s->sasl_waiting) { /* never traced: it carries credentials */
		pop3_sasl_response(s, line, len);
		return;
	}
	struct pop3_command c;
	enum pop3_parse_status status = pop3_parse(line, len, &c);
	trace_command(s, &c, line, len);
	switch (status) {
	case PARSE_OK:
		break;
	case PARSE_EMPTY:
		reply_err(s, "Empty command");
		return;
	case PARSE_NUL:
		reply_err(s, "NUL byte in command");
		return;
	case PARSE_UNKNOWN:
		reply_err(s, "Unknown command");
		return;
	case PARSE_BAD_ARGS:
		reply_err(s, "Wrong arguments for %s", pop3_cmd_name(c.cmd));
		return;
	case PARSE_BAD_NUMBER:
		reply_err(s, "Invalid number for %s", pop3_cmd_name(c.cmd));
		return;
	}
	bool handled = s->state == STATE_AUTHORIZATION ? pop3_auth_dispatch(s, &c)
						       : pop3_trans_dispatch(s, &c);
	if (!handled)
		reply_err(s, "%s is not valid in this state", pop3_cmd_name(c.cmd));
}

void session_process(struct session *s)
{
	/* A command may close the session (QUIT, too many bad commands), and
	 * with nothing left to send (the reply already handed to the TLS
	 * layer after STLS, or the peer gone) it would be freed under this
	 * loop: the free waits until the loop is done. */
	s->processing++;
	while (!s->closing && s->wait == WAIT_NONE) {
		if (s->peer_gone) /* answers of commands sent before it left */
			session_discard_output(s);
		if (evbuffer_get_length(bufferevent_get_output(s->bev)) > OUTPUT_HIGH_WATER) {
			session_wait_enter(s, WAIT_OUTPUT); /* resumed by the write callback */
			break;
		}
		char line[SASL_MAX_RESPONSE + 2];
		size_t len = 0;
		int got = next_line(s, line, &len);
		if (got == 0)
			break;
		session_command_timer_reset(s);
		if (got > 0)
			session_handle_line(s, line, len);
	}
	if (s->input_eof && s->wait == WAIT_NONE && !s->closing)
		session_close(s, "client closed the connection");
	s->processing--;
	session_maybe_free(s);
}

static void on_read(struct bufferevent *bev, void *arg)
{
	session_process(arg);
}

static void on_write(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;
	if (s->closing) {
		session_maybe_free(s);
		return;
	}
	if (s->wait == WAIT_STREAM) {
		session_command_timer_reset(s); /* the client is reading: not idle */
		pop3_stream_resume(s);
	} else if (s->wait == WAIT_OUTPUT) {
		session_resume(s);
	} else if (s->wait == WAIT_TLS_FLUSH) {
		session_stls_flushed(s);
	}
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct session *s = arg;
	/* A reset, a failed write, a TLS alert: nothing more can be sent.
	 * So too when a TLS connection ends without close_notify (libevent
	 * reports that as EOF, allow_dirty_shutdown): unlike TCP's half-close
	 * it is no way of saying "I am done sending but still reading". */
	if (what & BEV_EVENT_ERROR)
		s->peer_gone = true;
	if ((what & BEV_EVENT_EOF) && s->tls) {
		SSL *ssl = bufferevent_openssl_get_ssl(bev);
		if (ssl == NULL || !(SSL_get_shutdown(ssl) & SSL_RECEIVED_SHUTDOWN))
			s->peer_gone = true;
	}
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		bufferevent_disable(bev, EV_READ);
		session_input_ended(s);
	}
}

/* ---- life cycle ---- */

void session_free(struct session *s)
{
	session_assert_owner(s);
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		s->loop->sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	pop3_attempt_abandon(s);
	double seconds = difftime(time(NULL), s->started);
	char user[LOG_FIELD_SIZE];
	if (s->user.login != NULL)
		log_info("logout: user=%s from=%s retr=%u/%llu dele=%u/%llu time=%.0fs",
			 log_field_str(user, sizeof user, s->user.login), s->peer_text, s->retr_count,
			 (unsigned long long)s->retr_octets, s->dele_count,
			 (unsigned long long)s->dele_octets, seconds);
	else
		log_info("disconnect: from=%s time=%.0fs", s->peer_text, seconds);
	event_free(s->command_timer);
	event_free(s->session_timer);
	event_free(s->delay_timer);
	event_free(s->lease_timer);
	event_free(s->flush_timer);
	bufferevent_free(s->bev);
	conn_limit_release((struct sockaddr *)&s->peer);
	config_release(s->cfg);
	pop3_stream_free(s);
	if (s->maildrop != NULL)
		s->maildrop->ops->free(s->maildrop);
	free(s->deleted);
	free(s->retrieved);
	free(s->user_arg);
	sasl_free(s->sasl);
	user_clear(&s->user);
	free(s);
}

static void format_peer(const struct sockaddr *sa, char *out, size_t size)
{
	char host[INET6_ADDRSTRLEN] = "local"; /* inetd on a pipe */
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, host, sizeof host);
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, host,
			  sizeof host);
	snprintf(out, size, "%s", host);
}

static void session_setup_bev(struct session *s)
{
	bufferevent_setcb(s->bev, on_read, on_write, on_event, s);
	/* libevent writes at most 16 KiB per loop turn by default: a RETR
	 * piece goes out in one writev instead of sixteen */
	bufferevent_set_max_single_write(s->bev, RETR_CHUNK_SIZE);
	/* Reading pauses while this much input waits (a pipelining client
	 * during a slow job), so input memory per session stays bounded. */
	bufferevent_setwatermark(s->bev, EV_READ, 0, 64 * 1024);
	bufferevent_setwatermark(s->bev, EV_WRITE, RETR_LOW_WATER, 0);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
}

void session_replace_bev(struct session *s, struct bufferevent *bev)
{
	bufferevent_free(s->bev);
	s->bev = bev;
	session_setup_bev(s);
}

static void session_begin(struct ioloop *loop, const struct config *cfg, int fd,
			  const struct sockaddr *addr, socklen_t addrlen, bool implicit_tls,
			  SSL *established);

void session_start(struct ioloop *loop, const struct config *cfg, int fd,
		   const struct sockaddr *addr, socklen_t addrlen, bool implicit_tls)
{
	session_begin(loop, cfg, fd, addr, addrlen, implicit_tls, NULL);
}

void session_start_established(struct ioloop *loop, const struct config *cfg, int fd,
			       const struct sockaddr *addr, socklen_t addrlen, SSL *ssl)
{
	session_begin(loop, cfg, fd, addr, addrlen, true, ssl);
}

static void session_begin(struct ioloop *loop, const struct config *cfg, int fd,
			  const struct sockaddr *addr, socklen_t addrlen, bool implicit_tls,
			  SSL *established)
{
	struct session *s = xcalloc(1, sizeof *s);
	s->loop = loop;
	s->cfg = cfg;
	s->id = __atomic_add_fetch(&session_counter, 1, __ATOMIC_RELAXED);
	s->started = time(NULL);
	memcpy(&s->peer, addr, addrlen < sizeof s->peer ? addrlen : sizeof s->peer);
	format_peer(addr, s->peer_text, sizeof s->peer_text);

	if (implicit_tls) {
		SSL *ssl = established != NULL ? established : tls_session_new();
		s->bev = ssl ? bufferevent_openssl_socket_new(loop->base, fd, ssl,
							      established != NULL
								      ? BUFFEREVENT_SSL_OPEN
								      : BUFFEREVENT_SSL_ACCEPTING,
							      BEV_OPT_CLOSE_ON_FREE)
			     : NULL;
		if (s->bev == NULL && ssl != NULL)
			SSL_free(ssl);
		if (s->bev != NULL)
			bufferevent_openssl_set_allow_dirty_shutdown(s->bev, 1);
		s->tls = true;
	} else {
		s->bev = bufferevent_socket_new(loop->base, fd, BEV_OPT_CLOSE_ON_FREE);
	}
	if (s->bev == NULL) {
		close(fd);
		conn_limit_release(addr);
		config_release(cfg);
		free(s);
		return;
	}
	session_setup_bev(s);
	s->next = loop->sessions;
	if (s->next != NULL)
		s->next->prev = s;
	loop->sessions = s;

	s->command_timer = evtimer_new(loop->base, session_command_timeout, s);
	s->session_timer = evtimer_new(loop->base, session_keep_timeout, s);
	s->delay_timer = evtimer_new(loop->base, session_delay_timer, s);
	s->lease_timer = event_new(loop->base, -1, EV_PERSIST, pop3_lease_tick, s);
	s->flush_timer = evtimer_new(loop->base, session_flush_check, s);
	session_command_timer_reset(s);
	struct timeval keep = {cfg->connection_keep_time, 0};
	evtimer_add(s->session_timer, &keep);

	uint64_t nonce;
	arc4random_buf(&nonce, sizeof nonce);
	snprintf(s->apop_timestamp, sizeof s->apop_timestamp, "<%d.%llu.%016llx@%s>",
		 (int)getpid(), (unsigned long long)s->id, (unsigned long long)nonce,
		 cfg->hostname);
	log_info("connect: from=%s session=%llu tls=%s", s->peer_text, (unsigned long long)s->id,
		 s->tls ? "yes" : "no");
	/* the timestamp is what offers APOP (RFC 1939 section 7) */
	if (cfg->apop)
		reply_ok(s, "tpops ready %s", s->apop_timestamp);
	else
		reply_ok(s, "tpops ready");
}

void session_shutdown_all(struct ioloop *loop)
{
	for (struct session *s = loop->sessions, *next; s != NULL; s = next) {
		next = s->next; /* session_close may free s */
		if (s->closing || s->state == STATE_UPDATE)
			continue; /* leaving already, or committing its QUIT */
		/* no text inside a message, nor in the clear after STLS */
		if (s->wait != WAIT_STREAM && s->wait != WAIT_TLS_FLUSH &&
		    s->wait != WAIT_TLS_HANDSHAKE)
			reply_err(s, "[SYS/TEMP] Server shutting down, try again later");
		session_close(s, "server shutting down");
	}
}
