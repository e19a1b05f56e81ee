/* The control socket of tpops-admin, on the administration thread.
 *
 * One request per connection: a line "who", "kick LOGIN", "stats" or
 * "reload". The answer starts with "+OK text" or "-ERR text", then the
 * body lines, then the connection closes. Only root and the daemon's own
 * user are served (SO_PEERCRED), whatever the socket file's mode lets in. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "census.h"
#include "log.h"
#include "xalloc.h"

#define CONTROL_MAX_REQUEST 512
/* A client that sends no complete request in this time is dropped. */
#define CONTROL_READ_TIMEOUT 10
/* tpops-admin kick waits this long for the kicked sessions to be gone
 * (their locks released) before it answers. */
#define KICK_WAIT_MS 10000
#define KICK_POLL_MS 20
#define CENSUS_TIMEOUT_MS 2000
/* how long a reload through the control socket may take */
#define RELOAD_WAIT_SECONDS 30

struct control_client {
	struct admin *admin;
	struct bufferevent *bev;
	uid_t uid;
	pid_t pid;
};

static void client_free(struct control_client *c)
{
	bufferevent_free(c->bev);
	free(c);
}

static void on_event(struct bufferevent *bev, short what, void *arg);

static void on_flushed(struct bufferevent *bev, void *arg)
{
	struct control_client *c = arg;
	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		client_free(c);
}

/* Sends the answer and closes once it is out. */
static void finish(struct control_client *c, struct buf *body, bool ok, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void finish(struct control_client *c, struct buf *body, bool ok, const char *fmt, ...)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	evbuffer_add_printf(out, "%s ", ok ? "+OK" : "-ERR");
	va_list ap;
	va_start(ap, fmt);
	evbuffer_add_vprintf(out, fmt, ap);
	va_end(ap);
	evbuffer_add(out, "\n", 1);
	if (body != NULL && body->len > 0)
		evbuffer_add(out, body->data, body->len);
	bufferevent_disable(c->bev, EV_READ);
	bufferevent_setcb(c->bev, NULL, on_flushed, on_event, c);
	bufferevent_enable(c->bev, EV_WRITE);
}

/* Logins and peers go into the table as printable ASCII only. */
static void printable(char *s)
{
	for (; *s != '\0'; s++)
		if (*s <= 0x20 || *s >= 0x7f)
			*s = '?';
}

static void add_session_rows(struct buf *b, const struct census_row *rows, size_t n)
{
	buf_printf(b, "%-20s %-39s %-15s %-19s %8s %8s %12s %-3s %6s\n", "LOGIN", "PEER", "STATE",
		   "SINCE", "MESSAGES", "RETR", "SENT", "TLS", "THREAD");
	for (size_t i = 0; i < n; i++) {
		struct census_row r = rows[i];
		printable(r.login);
		printable(r.peer);
		char since[32];
		struct tm tm;
		localtime_r(&r.since, &tm);
		strftime(since, sizeof since, "%Y-%m-%dT%H:%M:%S", &tm);
		buf_printf(b, "%-20s %-39s %-15s %-19s %8zu %8u %12llu %-3s %6u\n", r.login, r.peer,
			   metrics_session_state_name(r.state), since, r.messages, r.retrieved,
			   (unsigned long long)r.octets_sent, r.tls ? "yes" : "no", r.thread);
	}
}

static const char *sessions_word(size_t n)
{
	return n == 1 ? "session" : "sessions";
}

static int by_login(const void *x, const void *y)
{
	const struct census_row *a = x, *b = y;
	int c = strcmp(a->login, b->login);
	return c != 0 ? c : (a->id < b->id ? -1 : a->id > b->id);
}

static void cmd_who(struct control_client *c)
{
	struct census *cs = census_take(CENSUS_LIST, NULL, NULL, 0, CENSUS_TIMEOUT_MS);
	qsort(cs->rows, cs->nrows, sizeof *cs->rows, by_login);
	struct buf body = BUF_INIT;
	add_session_rows(&body, cs->rows, cs->nrows);
	if (cs->answered < cs->loops)
		finish(c, &body, true, "%zu %s logged in (%u of %u I/O threads did not answer)",
		       cs->nrows, sessions_word(cs->nrows), cs->loops - cs->answered, cs->loops);
	else
		finish(c, &body, true, "%zu %s logged in", cs->nrows, sessions_word(cs->nrows));
	buf_free(&body);
	census_free(cs);
}

/* Waits until the kicked sessions are gone (their leases released), so
 * that a new login of that user succeeds as soon as kick returns. */
static size_t wait_gone(struct admin *a, const struct census *kicked)
{
	uint64_t *ids = xcalloc(kicked->nrows ? kicked->nrows : 1, sizeof *ids);
	for (size_t i = 0; i < kicked->nrows; i++)
		ids[i] = kicked->rows[i].id;
	size_t left = kicked->nrows;
	for (int waited = 0; left > 0 && waited < KICK_WAIT_MS &&
			     !__atomic_load_n(&a->stopping, __ATOMIC_RELAXED);
	     waited += KICK_POLL_MS) {
		struct timespec pause = {0, KICK_POLL_MS * 1000000L};
		nanosleep(&pause, NULL);
		struct census *cs = census_take(CENSUS_FIND, NULL, ids, kicked->nrows,
						CENSUS_TIMEOUT_MS);
		left = cs->nrows;
		census_free(cs);
	}
	free(ids);
	return left;
}

static void cmd_kick(struct control_client *c, const char *login)
{
	if (*login == '\0') {
		finish(c, NULL, false, "usage: kick LOGIN");
		return;
	}
	struct census *cs = census_take(CENSUS_KICK, login, NULL, 0, CENSUS_TIMEOUT_MS);
	char shown[128];
	snprintf(shown, sizeof shown, "%s", login);
	printable(shown);
	if (cs->nrows == 0) {
		finish(c, NULL, false, "no session of %s", shown);
		census_free(cs);
		return;
	}
	log_info("control: kick user=%s: %zu %s ended (uid %d)", shown, cs->nrows,
		 sessions_word(cs->nrows), (int)c->uid);
	size_t left = wait_gone(c->admin, cs);
	struct buf body = BUF_INIT;
	add_session_rows(&body, cs->rows, cs->nrows);
	if (left > 0)
		finish(c, &body, true, "%zu %s of %s ended; %zu still finishing", cs->nrows,
		       sessions_word(cs->nrows), shown, left);
	else
		finish(c, &body, true, "%zu %s of %s ended", cs->nrows, sessions_word(cs->nrows),
		       shown);
	buf_free(&body);
	census_free(cs);
}

static void cmd_stats(struct control_client *c)
{
	struct metrics_live live;
	admin_live(c->admin, &live, NULL, 0);
	struct buf body = BUF_INIT;
	metrics_render(&body, METRICS_TABLE, &live);
	finish(c, &body, true, "statistics since the start");
	buf_free(&body);
}

/* ---- reload: SIGHUP's work, on the main thread ---- */

struct reload_call {
	struct admin *admin;
	pthread_mutex_t mutex;
	pthread_cond_t cond;
	bool done, applied;
	unsigned refs; /* the caller and the main thread, under mutex */
	struct buf report;
};

static void reload_call_release(struct reload_call *r)
{
	bool last = --r->refs == 0;
	pthread_mutex_unlock(&r->mutex);
	if (!last)
		return;
	pthread_mutex_destroy(&r->mutex);
	pthread_cond_destroy(&r->cond);
	buf_free(&r->report);
	free(r);
}

static void reload_on_main(evutil_socket_t fd, short what, void *arg)
{
	struct reload_call *r = arg;
	struct buf report = BUF_INIT;
	bool applied = r->admin->reload(r->admin->reload_arg, &report);
	pthread_mutex_lock(&r->mutex);
	r->report = report;
	r->applied = applied;
	r->done = true;
	pthread_cond_signal(&r->cond);
	reload_call_release(r);
}

static void cmd_reload(struct control_client *c)
{
	struct reload_call *r = xcalloc(1, sizeof *r);
	r->admin = c->admin;
	r->refs = 2;
	pthread_mutex_init(&r->mutex, NULL);
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cond, &attr);
	pthread_condattr_destroy(&attr);
	static const struct timeval now = {0, 0};
	if (event_base_once(c->admin->main_base, -1, EV_TIMEOUT, reload_on_main, r, &now) != 0) {
		pthread_mutex_lock(&r->mutex);
		r->refs--; /* the main thread never gets it */
		reload_call_release(r);
		finish(c, NULL, false, "the daemon is stopping");
		return;
	}
	/* in short steps: at a shutdown the main thread may never run it */
	pthread_mutex_lock(&r->mutex);
	for (int step = 0; !r->done && step < RELOAD_WAIT_SECONDS * 10 &&
			   !__atomic_load_n(&c->admin->stopping, __ATOMIC_RELAXED);
	     step++) {
		struct timespec next;
		clock_gettime(CLOCK_MONOTONIC, &next);
		next.tv_nsec += 100 * 1000000L;
		if (next.tv_nsec >= 1000000000L) {
			next.tv_sec++;
			next.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&r->cond, &r->mutex, &next);
	}
	if (!r->done)
		finish(c, NULL, false, "no answer from the main thread within %d s (stopping?)",
		       RELOAD_WAIT_SECONDS);
	else
		finish(c, &r->report, r->applied, "%s",
		       r->applied ? "reload applied" : "reload refused, the running configuration "
							"stays in force");
	reload_call_release(r);
}

/* ---- the connection ---- */

static void on_read(struct bufferevent *bev, void *arg)
{
	struct control_client *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len = 0;
	char *line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF);
	if (line == NULL) {
		if (evbuffer_get_length(in) > CONTROL_MAX_REQUEST)
			finish(c, NULL, false, "request too long");
		return;
	}
	if (len > CONTROL_MAX_REQUEST) {
		free(line);
		finish(c, NULL, false, "request too long");
		return;
	}
	char *arg1 = strchr(line, ' ');
	if (arg1 != NULL)
		*arg1++ = '\0';
	if (strcmp(line, "who") == 0 && arg1 == NULL)
		cmd_who(c);
	else if (strcmp(line, "kick") == 0)
		cmd_kick(c, arg1 ? arg1 : "");
	else if (strcmp(line, "stats") == 0 && arg1 == NULL)
		cmd_stats(c);
	else if (strcmp(line, "reload") == 0 && arg1 == NULL)
		cmd_reload(c);
	else
		finish(c, NULL, false, "unknown request; expected who, kick LOGIN, stats or reload");
	free(line);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	client_free(arg); /* EOF, error or timeout before a whole request */
}

static void on_accept(struct evconnlistener *listener, evutil_socket_t fd, struct sockaddr *sa,
		      int socklen, void *arg)
{
	struct admin *a = arg;
	struct ucred cred;
	socklen_t len = sizeof cred;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
		log_error("control: cannot tell who connected: %s", strerror(errno));
		close(fd);
		return;
	}
	if (cred.uid != 0 && cred.uid != a->daemon_uid) {
		log_warn("control: refused uid %d (pid %d): only root and the daemon's user (uid %d) "
			 "may use %s",
			 (int)cred.uid, (int)cred.pid, (int)a->daemon_uid, a->cfg->control_socket);
		char msg[256];
		int n = snprintf(msg, sizeof msg,
				 "-ERR permission denied: only root and the daemon's user may use "
				 "the control socket\n");
		(void)!send(fd, msg, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
		close(fd);
		return;
	}
	struct control_client *c = xcalloc(1, sizeof *c);
	c->admin = a;
	c->uid = cred.uid;
	c->pid = cred.pid;
	c->bev = bufferevent_socket_new(a->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		close(fd);
		free(c);
		return;
	}
	struct timeval timeout = {CONTROL_READ_TIMEOUT, 0};
	bufferevent_set_timeouts(c->bev, &timeout, &timeout);
	bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
	bufferevent_enable(c->bev, EV_READ);
}

int control_serve(struct admin *a)
{
	a->control = evconnlistener_new(a->base, on_accept, a, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
					0, a->control_fd);
	return a->control != NULL ? 0 : -1;
}
