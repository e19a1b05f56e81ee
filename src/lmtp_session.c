/* One LMTP connection: RFC 2033 on top of the pure parsers of
 * lmtp_parse.c. Commands are read and answered on the LMTP I/O thread;
 * what touches the store (resolving a RCPT, storing the message) is a
 * job on the storage workers, during which the session reads nothing
 * more. Pipelined commands simply wait in the input buffer, and their
 * replies leave in order.
 *
 * A job owns what it was handed (paths, users, the message) and gives it
 * back in its done callback; a session whose peer vanished meanwhile is
 * freed there, never while a job is in flight. */
#include "lmtp_session.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "buf.h"
#include "deliver.h"
#include "ioloop.h"
#include "lmtp_parse.h"
#include "log.h"
#include "metrics.h"
#include "xalloc.h"

/* Room kept in front of the message for Return-Path and Delivered-To,
 * written anew for each recipient (two paths of at most LMTP_MAX_PATH). */
#define HEADER_ROOM 1024
/* Replies waiting to be sent beyond which no more commands are read. */
#define LMTP_OUTPUT_HIGH_WATER (64 * 1024)

enum phase {
	PHASE_COMMAND, /* reading command lines */
	PHASE_DATA,    /* reading the message after 354 */
	PHASE_JOB,     /* a job runs; input waits */
	PHASE_CLOSING, /* the last reply is being sent */
};

struct rcpt {
	char path[LMTP_MAX_PATH + 1];
	struct user user;
	enum deliver_result result; /* of the store */
};

struct lmtp_job;

struct lmtp_session {
	struct lmtp_server *srv;
	struct bufferevent *bev;
	struct lmtp_session *prev, *next;
	enum phase phase;
	bool greeted;   /* LHLO seen */
	bool in_mail;   /* MAIL accepted, transaction open */
	bool peer_gone; /* a connection error while a job ran */
	bool input_eof; /* the peer sent all it will (it may still read) */
	char sender[LMTP_MAX_PATH + 1];
	uint64_t declared_size; /* MAIL SIZE= */
	struct rcpt *rcpts;
	size_t nrcpt;
	struct lmtp_data data;
	struct buf msg; /* HEADER_ROOM octets, then the message */
	struct lmtp_job *job; /* in flight, or NULL */
};

/* What a job owns while it runs; the session touches none of it then. */
struct lmtp_job {
	struct job base; /* first: the worker hands back &base */
	struct lmtp_session *s;
	const struct config *cfg;
	/* a RCPT (resolve_run): in path, size; out user, result */
	struct rcpt rcpt;
	uint64_t size;
	enum deliver_result result;
	/* the DATA (store_run): the transaction, handed over whole */
	char sender[LMTP_MAX_PATH + 1];
	struct rcpt *rcpts;
	size_t nrcpt;
	struct buf msg;
	char err[512];
};

static void process_input(struct lmtp_session *s);
static void after_input(struct lmtp_session *s);

/* ---- replies ---- */

__attribute__((format(printf, 2, 3))) static void reply(struct lmtp_session *s, const char *fmt,
							 ...)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	va_list ap;
	va_start(ap, fmt);
	evbuffer_add_vprintf(out, fmt, ap);
	va_end(ap);
	evbuffer_add(out, "\r\n", 2);
}

/* Sends what is queued (always a last reply), then closes: on_write
 * frees the session once the output is empty. */
static void close_after_reply(struct lmtp_session *s)
{
	s->phase = PHASE_CLOSING;
	bufferevent_disable(s->bev, EV_READ);
}

/* ---- the session's life ---- */

static void transaction_reset(struct lmtp_session *s)
{
	for (size_t i = 0; i < s->nrcpt; i++)
		user_clear(&s->rcpts[i].user);
	free(s->rcpts);
	s->rcpts = NULL;
	s->nrcpt = 0;
	s->in_mail = false;
	s->sender[0] = '\0';
	s->declared_size = 0;
	buf_free(&s->msg);
}

static void session_free(struct lmtp_session *s)
{
	struct lmtp_server *srv = s->srv;
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		srv->sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	transaction_reset(s);
	bufferevent_free(s->bev);
	free(s);
	atomic_fetch_sub(&srv->nsessions, 1);
}

/* The peer is gone (or timed out): free now, or when the job returns. */
static void session_end(struct lmtp_session *s)
{
	if (s->job != NULL) {
		s->peer_gone = true;
		bufferevent_disable(s->bev, EV_READ | EV_WRITE);
		return;
	}
	session_free(s);
}

/* ---- jobs ---- */

static void job_submit(struct lmtp_session *s, struct lmtp_job *job, void (*done)(struct job *))
{
	job->s = s;
	job->cfg = s->srv->cfg;
	job->base.done = done;
	job->base.loop = s->srv->loop;
	s->job = job;
	s->srv->jobs++;
	s->phase = PHASE_JOB;
	bufferevent_disable(s->bev, EV_READ);
	worker_submit(&job->base);
}

/* Back from a job: the session reads again, or ends if its peer left. */
static bool job_finish(struct lmtp_session *s)
{
	s->job = NULL;
	s->srv->jobs--;
	if (s->peer_gone) {
		session_free(s);
		return false;
	}
	if (s->srv->stopping) {
		reply(s, "421 4.3.2 %s shutting down", s->srv->cfg->hostname);
		close_after_reply(s);
		return false;
	}
	s->phase = PHASE_COMMAND;
	if (!s->input_eof)
		bufferevent_enable(s->bev, EV_READ);
	return true;
}

/* After a temporary failure the worker's connection may be the broken
 * part: the next job opens a new one. */
static struct db *job_db(struct lmtp_job *job)
{
	struct db *db = worker_db(job->err, sizeof job->err);
	return db;
}

static void resolve_run(struct job *base)
{
	struct lmtp_job *job = (struct lmtp_job *)base;
	struct db *db = job_db(job);
	if (db == NULL) {
		job->result = DELIVER_TEMPORARY;
		return;
	}
	job->result = deliver_resolve(db, job->rcpt.path, true, &job->rcpt.user, job->err,
				      sizeof job->err);
	if (job->result == DELIVER_STORED) {
		job->result = deliver_check_room(db, job->cfg, &job->rcpt.user, job->size,
						 job->err, sizeof job->err);
		if (job->result != DELIVER_STORED)
			user_clear(&job->rcpt.user);
	}
	if (job->result == DELIVER_TEMPORARY)
		worker_db_discard();
}

static void resolve_done(struct job *base)
{
	struct lmtp_job *job = (struct lmtp_job *)base;
	struct lmtp_session *s = job->s;
	const char *path = job->rcpt.path;
	char to[LOG_FIELD_SIZE]; /* the client's path, escaped for the log */
	if (job->result != DELIVER_STORED)
		metrics_lmtp_delivery(job->result);
	switch (job->result) {
	case DELIVER_STORED:
		s->rcpts = xrealloc(s->rcpts, (s->nrcpt + 1) * sizeof *s->rcpts);
		s->rcpts[s->nrcpt++] = job->rcpt; /* the user moves over */
		if (!s->peer_gone)
			reply(s, "250 2.1.5 <%s> OK", path);
		break;
	case DELIVER_UNKNOWN:
		reply(s, "550 5.1.1 <%s> User unknown", path);
		break;
	case DELIVER_OVER_QUOTA:
		log_info("lmtp: to=<%s>: %s", log_field_str(to, sizeof to, path), job->err);
		reply(s, "552 5.2.2 <%s> Mailbox full: over quota", path);
		break;
	case DELIVER_PERMANENT:
		log_warn("lmtp: to=<%s>: %s", log_field_str(to, sizeof to, path), job->err);
		reply(s, "550 5.3.0 <%s> Cannot deliver to this address", path);
		break;
	case DELIVER_TEMPORARY:
		log_warn("lmtp: to=<%s>: %s", log_field_str(to, sizeof to, path), job->err);
		reply(s, "451 4.3.0 <%s> Temporary failure, try again later", path);
		break;
	}
	free(job);
	if (job_finish(s)) {
		process_input(s);
		after_input(s);
	}
}

/* The message with this recipient's Return-Path and Delivered-To in
 * front, written into the room before it: no copy of the message. */
static const char *with_envelope(struct lmtp_job *job, const struct rcpt *r, size_t *len_r)
{
	char head[HEADER_ROOM];
	int n = snprintf(head, sizeof head, "Return-Path: <%s>\nDelivered-To: %s\n", job->sender,
			 r->path);
	/* both paths are at most LMTP_MAX_PATH: it always fits */
	char *start = job->msg.data + HEADER_ROOM - n;
	memcpy(start, head, (size_t)n);
	*len_r = job->msg.len - HEADER_ROOM + (size_t)n;
	return start;
}

/* SQLite has one writer at a time and makes the others wait in sleeps of
 * up to 100 ms (its busy handler): with several LMTP connections storing
 * at once, deliveries were slower than over one. They queue here instead;
 * other databases and Maildirs take concurrent deliveries as they are. */
static pthread_mutex_t sqlite_store_mutex = PTHREAD_MUTEX_INITIALIZER;

static bool serialized_store(const struct config *cfg)
{
	return cfg->database == DATABASE_SQLITE && cfg->mailbox == MAILBOX_SQL;
}

static void store_run(struct job *base)
{
	struct lmtp_job *job = (struct lmtp_job *)base;
	struct db *db = job_db(job);
	char to[LOG_FIELD_SIZE]; /* the client's path, escaped for the log */
	for (size_t i = 0; i < job->nrcpt; i++) {
		struct rcpt *r = &job->rcpts[i];
		/* a user named twice gets the message once; each RCPT still
		 * gets its reply (RFC 2033 4.2) */
		bool again = false;
		for (size_t j = 0; j < i && !again; j++)
			if (job->rcpts[j].user.uid == r->user.uid) {
				r->result = job->rcpts[j].result;
				again = true;
			}
		if (again)
			continue;
		if (db == NULL) {
			r->result = DELIVER_TEMPORARY;
			log_warn("lmtp: to=<%s>: %s", log_field_str(to, sizeof to, r->path),
				 job->err);
			continue;
		}
		size_t len;
		const char *msg = with_envelope(job, r, &len);
		char err[512] = "";
		bool serialize = serialized_store(job->cfg);
		if (serialize)
			pthread_mutex_lock(&sqlite_store_mutex);
		r->result = deliver_store(db, job->cfg, &r->user, msg, len, err, sizeof err);
		if (serialize)
			pthread_mutex_unlock(&sqlite_store_mutex);
		uint64_t size = job->msg.len - HEADER_ROOM;
		/* the paths are the client's text: escaped (log.h) */
		char from[LOG_FIELD_SIZE];
		log_field_str(from, sizeof from, job->sender);
		log_field_str(to, sizeof to, r->path);
		if (r->result == DELIVER_STORED)
			log_info("lmtp: delivered from=<%s> to=<%s> size=%llu", from, to,
				 (unsigned long long)size);
		else
			log_warn("lmtp: not delivered from=<%s> to=<%s> size=%llu: %s: %s", from, to,
				 (unsigned long long)size, deliver_result_name(r->result), err);
		if (r->result == DELIVER_TEMPORARY) {
			worker_db_discard();
			db = job_db(job);
		}
	}
}

static void reply_stored(struct lmtp_session *s, const struct rcpt *r)
{
	switch (r->result) {
	case DELIVER_STORED:
		reply(s, "250 2.0.0 <%s> Delivered", r->path);
		break;
	case DELIVER_UNKNOWN:
		reply(s, "550 5.1.1 <%s> User unknown", r->path);
		break;
	case DELIVER_OVER_QUOTA:
		reply(s, "552 5.2.2 <%s> Mailbox full: over quota", r->path);
		break;
	case DELIVER_PERMANENT:
		reply(s, "554 5.3.0 <%s> Cannot deliver this message", r->path);
		break;
	case DELIVER_TEMPORARY:
		reply(s, "451 4.3.0 <%s> Temporary failure, try again later", r->path);
		break;
	}
}

static void store_done(struct job *base)
{
	struct lmtp_job *job = (struct lmtp_job *)base;
	struct lmtp_session *s = job->s;
	for (size_t i = 0; i < job->nrcpt; i++)
		metrics_lmtp_delivery(job->rcpts[i].result);
	/* one reply per accepted recipient, in RCPT order (RFC 2033 4.2) */
	if (!s->peer_gone)
		for (size_t i = 0; i < job->nrcpt; i++)
			reply_stored(s, &job->rcpts[i]);
	for (size_t i = 0; i < job->nrcpt; i++)
		user_clear(&job->rcpts[i].user);
	free(job->rcpts);
	buf_free(&job->msg);
	free(job);
	if (job_finish(s)) {
		process_input(s);
		after_input(s);
	}
}

/* ---- commands ---- */

static void cmd_lhlo(struct lmtp_session *s)
{
	transaction_reset(s);
	s->greeted = true;
	const struct config *cfg = s->srv->cfg;
	reply(s, "250-%s", cfg->hostname);
	reply(s, "250-PIPELINING");
	reply(s, "250-ENHANCEDSTATUSCODES");
	reply(s, "250-8BITMIME");
	reply(s, "250 SIZE %d", cfg->lmtp_max_message_size);
}

static void cmd_mail(struct lmtp_session *s, const struct lmtp_command *c)
{
	if (!s->greeted) {
		reply(s, "503 5.5.1 Say LHLO first");
	} else if (s->in_mail) {
		reply(s, "503 5.5.1 Nested MAIL command");
	} else if (c->size > (uint64_t)s->srv->cfg->lmtp_max_message_size) {
		reply(s, "552 5.3.4 Message size exceeds fixed maximum message size");
	} else {
		s->in_mail = true;
		memcpy(s->sender, c->path, sizeof s->sender);
		s->declared_size = c->size;
		reply(s, "250 2.1.0 Sender OK");
	}
}

static void cmd_rcpt(struct lmtp_session *s, const struct lmtp_command *c)
{
	if (!s->in_mail) {
		reply(s, "503 5.5.1 MAIL first");
		return;
	}
	if (s->nrcpt >= LMTP_MAX_RECIPIENTS) {
		reply(s, "452 4.5.3 Too many recipients");
		return;
	}
	struct lmtp_job *job = xcalloc(1, sizeof *job);
	job->base.run = resolve_run;
	memcpy(job->rcpt.path, c->path, sizeof job->rcpt.path);
	job->size = s->declared_size;
	job_submit(s, job, resolve_done);
}

static void cmd_data(struct lmtp_session *s)
{
	if (!s->in_mail) {
		reply(s, "503 5.5.1 MAIL first");
		return;
	}
	if (s->nrcpt == 0) {
		/* RFC 2033 4.2: no successful RCPT, DATA fails with 503 */
		reply(s, "503 5.5.1 No valid recipients");
		return;
	}
	buf_free(&s->msg);
	buf_reserve(&s->msg, HEADER_ROOM + 64 * 1024);
	memset(s->msg.data, 0, HEADER_ROOM);
	s->msg.len = HEADER_ROOM;
	lmtp_data_start(&s->data, (uint64_t)s->srv->cfg->lmtp_max_message_size);
	s->phase = PHASE_DATA;
	reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

/* The "." line came: store for every recipient, or refuse them all. */
static void end_of_data(struct lmtp_session *s)
{
	if (s->data.too_big) {
		char from[LOG_FIELD_SIZE];
		log_warn("lmtp: from=<%s>: message of %llu octets refused, LMTP_MaxMessageSize is "
			 "%d",
			 log_field_str(from, sizeof from, s->sender), (unsigned long long)s->data.size,
			 s->srv->cfg->lmtp_max_message_size);
		for (size_t i = 0; i < s->nrcpt; i++) {
			metrics_lmtp_delivery(DELIVER_PERMANENT);
			reply(s, "552 5.3.4 <%s> Message too big for system", s->rcpts[i].path);
		}
		transaction_reset(s);
		s->phase = PHASE_COMMAND;
		return;
	}
	struct lmtp_job *job = xcalloc(1, sizeof *job);
	job->base.run = store_run;
	memcpy(job->sender, s->sender, sizeof job->sender);
	job->rcpts = s->rcpts;
	job->nrcpt = s->nrcpt;
	job->msg = s->msg;
	s->rcpts = NULL;
	s->nrcpt = 0;
	s->msg = (struct buf)BUF_INIT;
	transaction_reset(s); /* the next transaction starts clean */
	job_submit(s, job, store_done);
}

static void command(struct lmtp_session *s, const char *line, size_t len)
{
	struct lmtp_command c;
	enum lmtp_parse_status st = lmtp_parse_command(line, len, &c);
	switch (st) {
	case LMTP_PARSE_OK:
		break;
	case LMTP_PARSE_UNKNOWN:
		reply(s, "500 5.5.2 Unknown command");
		return;
	case LMTP_PARSE_SYNTAX:
		reply(s, "501 5.5.4 Syntax error in parameters or arguments");
		return;
	case LMTP_PARSE_PATH:
		if (c.verb == LMTP_MAIL)
			reply(s, "501 5.1.7 Bad sender address syntax");
		else
			reply(s, "501 5.1.3 Bad recipient address syntax");
		return;
	case LMTP_PARSE_PARAMETER:
		reply(s, "555 5.5.4 Unsupported parameter");
		return;
	}
	switch (c.verb) {
	case LMTP_LHLO:
		cmd_lhlo(s);
		break;
	case LMTP_HELO:
		reply(s, "500 5.5.1 This is LMTP: say LHLO");
		break;
	case LMTP_MAIL:
		cmd_mail(s, &c);
		break;
	case LMTP_RCPT:
		cmd_rcpt(s, &c);
		break;
	case LMTP_DATA:
		cmd_data(s);
		break;
	case LMTP_RSET:
		transaction_reset(s);
		reply(s, "250 2.0.0 OK");
		break;
	case LMTP_NOOP:
		reply(s, "250 2.0.0 OK");
		break;
	case LMTP_VRFY:
		reply(s, "252 2.5.2 Send some mail and see");
		break;
	case LMTP_QUIT:
		reply(s, "221 2.0.0 %s closing connection", s->srv->cfg->hostname);
		close_after_reply(s);
		break;
	case LMTP_NONE:
		break;
	}
}

/* ---- input ---- */

/* Feeds what has arrived of the message to the decoder; false when the
 * input is used up. */
static bool feed_data(struct lmtp_session *s, struct evbuffer *in)
{
	struct evbuffer_iovec v;
	if (evbuffer_get_length(in) == 0 || evbuffer_peek(in, -1, NULL, &v, 1) < 1)
		return false;
	bool done;
	size_t used = lmtp_data_feed(&s->data, v.iov_base, v.iov_len, &s->msg, &done);
	evbuffer_drain(in, used);
	if (done)
		end_of_data(s);
	return true;
}

/* Reads command lines (and message octets) until a job starts, the
 * input runs out, or too many replies wait to be sent. */
static void process_input(struct lmtp_session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	struct evbuffer *out = bufferevent_get_output(s->bev);
	while (s->phase == PHASE_COMMAND || s->phase == PHASE_DATA) {
		if (s->phase == PHASE_DATA) {
			if (!feed_data(s, in))
				return;
			continue;
		}
		if (evbuffer_get_length(out) > LMTP_OUTPUT_HIGH_WATER)
			return; /* on_write resumes */
		size_t eol_len = 0;
		struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF);
		if (eol.pos < 0) {
			if (evbuffer_get_length(in) > LMTP_MAX_LINE + 1) {
				reply(s, "500 5.5.2 Line too long");
				close_after_reply(s);
			}
			return;
		}
		size_t len = (size_t)eol.pos;
		if (len > LMTP_MAX_LINE) {
			evbuffer_drain(in, len + eol_len);
			reply(s, "500 5.5.2 Line too long");
			continue;
		}
		char line[LMTP_MAX_LINE + 1];
		evbuffer_remove(in, line, len);
		evbuffer_drain(in, eol_len);
		line[len] = '\0';
		command(s, line, len);
	}
}

static void on_read(struct bufferevent *bev, void *arg)
{
	process_input(arg);
}

static void on_write(struct bufferevent *bev, void *arg)
{
	struct lmtp_session *s = arg;
	if (s->phase == PHASE_CLOSING) {
		session_free(s);
	} else if (s->phase == PHASE_COMMAND) {
		process_input(s); /* replies drained: read on */
		after_input(s);
	}
}

/* After the input was processed as far as it goes: a peer that has sent
 * all it will (a client that half-closes after its pipelined commands,
 * `... | nc -U`) gets the replies to what it sent, then the connection
 * is closed. Frees s, or leaves it to on_write. */
static void after_input(struct lmtp_session *s)
{
	if (!s->input_eof || s->job != NULL || s->phase == PHASE_CLOSING)
		return;
	if (evbuffer_get_length(bufferevent_get_output(s->bev)) > 0)
		close_after_reply(s);
	else
		session_free(s);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct lmtp_session *s = arg;
	if ((what & BEV_EVENT_TIMEOUT) && s->phase != PHASE_CLOSING && s->job == NULL) {
		log_info("lmtp: connection idle for %d s, closing", s->srv->cfg->lmtp_timeout);
		reply(s, "421 4.4.2 %s timeout, closing connection", s->srv->cfg->hostname);
		/* the write side gets its own timeout: a peer that reads
		 * nothing is dropped when it fires */
		close_after_reply(s);
		bufferevent_enable(s->bev, EV_WRITE);
		return;
	}
	if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) && s->phase != PHASE_CLOSING) {
		s->input_eof = true;
		if (s->job == NULL) {
			process_input(s);
			after_input(s);
		}
		return; /* with a job running, its end answers and closes */
	}
	session_end(s);
}

void lmtp_session_start(struct lmtp_server *srv, int fd)
{
	const struct config *cfg = srv->cfg;
	struct lmtp_session *s = xcalloc(1, sizeof *s);
	s->srv = srv;
	s->bev = bufferevent_socket_new(srv->loop->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (s->bev == NULL) {
		log_warn("lmtp: cannot set up a connection");
		evutil_closesocket(fd);
		free(s);
		return;
	}
	s->next = srv->sessions;
	if (s->next != NULL)
		s->next->prev = s;
	srv->sessions = s;
	atomic_fetch_add(&srv->nsessions, 1);
	bool refused =
		srv->stopping || atomic_load(&srv->nsessions) > (unsigned)cfg->lmtp_max_connections;
	if (refused)
		reply(s, "421 4.3.2 %s %s", cfg->hostname,
		      srv->stopping ? "shutting down" : "too many connections");
	else
		reply(s, "220 %s LMTP tpops ready", cfg->hostname);
	struct timeval timeout = {.tv_sec = cfg->lmtp_timeout};
	bufferevent_set_timeouts(s->bev, &timeout, &timeout);
	bufferevent_setcb(s->bev, on_read, on_write, on_event, s);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	if (refused) {
		log_warn("lmtp: connection refused: %s",
			 srv->stopping ? "shutting down" : "LMTP_MaxConnections reached");
		close_after_reply(s);
	}
}

void lmtp_session_shutdown_all(struct lmtp_server *srv)
{
	struct lmtp_session *next;
	for (struct lmtp_session *s = srv->sessions; s != NULL; s = next) {
		next = s->next;
		/* a session with a job is answered and closed when it returns
		 * (job_finish); a message half received was not acknowledged,
		 * so the MTA sends it again later */
		if (s->job == NULL && s->phase != PHASE_CLOSING) {
			reply(s, "421 4.3.2 %s shutting down", srv->cfg->hostname);
			close_after_reply(s);
		}
	}
}

void lmtp_session_free_all(struct lmtp_server *srv)
{
	while (srv->sessions != NULL)
		session_free(srv->sessions);
}
