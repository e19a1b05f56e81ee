/* AUTHORIZATION state: USER, PASS, APOP, STLS, CAPA, QUIT (AUTH is in
 * pop3_sasl.c), and the login job that checks credentials, takes the
 * maildrop lock and lists the maildrop on a storage worker. */
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "auth_login.h"
#include "auth_penalty.h"
#include "auth_standin.h"
#include "buf.h"
#include "ioloop.h"
#include "log.h"
#include "metrics.h"
#include "password.h"
#include "sasl.h"
#include "session.h"
#include "tls.h"
#include "worker.h"
#include "xalloc.h"

enum login_result { LOGIN_OK, LOGIN_BAD, LOGIN_IN_USE, LOGIN_TEMP, LOGIN_PERM };
_Static_assert(LOGIN_BAD == (int)LOGIN_RESULT_FAILED && LOGIN_PERM == (int)LOGIN_RESULT_PERMANENT,
	       "a login result is counted as the metric of the same value");

struct login_job {
	struct session_job sj;
	const struct config *cfg;
	enum login_method method;
	const char *mechanism; /* for the log: USER, APOP, PLAIN, SCRAM-SHA-256... */
	char *login;
	char *secret; /* password or APOP digest; wiped */
	size_t secret_len;
	char apop_timestamp[128];
	char owner[128];
	/* results */
	enum login_result result;
	bool verified; /* the credentials were right (whatever came after) */
	struct user user;
	struct maildrop *maildrop;
	char error[512];
};

static double seconds_since(const struct timespec *t)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t->tv_sec) + (double)(now.tv_nsec - t->tv_nsec) / 1e9;
}

static bool credentials_ok(struct login_job *lj)
{
	int match;
	switch (lj->method) {
	case LOGIN_SASL_VERIFIED:
		return true;
	case LOGIN_APOP:
		match = password_apop_verify(lj->user.passwd, lj->apop_timestamp, lj->secret,
					     lj->secret_len);
		if (match != 1 && password_plaintext(lj->user.passwd) == NULL) {
			snprintf(lj->error, sizeof lj->error,
				 "APOP needs a plaintext-stored password");
			return false;
		}
		break;
	default: {
		struct timespec start;
		clock_gettime(CLOCK_MONOTONIC, &start);
		match = password_verify(lj->user.passwd, lj->secret, lj->secret_len);
		/* A plaintext (or unusable) stored password is checked at once,
		 * while an unknown user costs the stand-in: without this the
		 * CPU a wrong password takes tells which logins exist. A right
		 * password pays nothing extra (it reveals nothing). */
		if (match != 1 && (match < 0 || password_plaintext(lj->user.passwd) != NULL))
			auth_standin_verify(lj->secret, lj->secret_len);
		else
			auth_standin_note(lj->user.passwd, seconds_since(&start));
		break;
	}
	}
	if (match != 1)
		snprintf(lj->error, sizeof lj->error, "%s",
			 match < 0 ? "stored password has an unknown scheme or is malformed"
				   : "wrong password");
	return match == 1;
}

static enum login_result login_check(struct login_job *lj, struct db *db)
{
	int status = db->ops->user_by_login(db, lj->login, &lj->user);
	if (status == DB_NOT_FOUND) {
		/* an unknown user costs what a wrong password costs */
		if (lj->method == LOGIN_USER_PASS || lj->method == LOGIN_SASL_PASSWORD)
			auth_standin_verify(lj->secret, lj->secret_len);
		snprintf(lj->error, sizeof lj->error, "unknown user");
		return LOGIN_BAD;
	}
	if (status != DB_OK) {
		snprintf(lj->error, sizeof lj->error, "looking up the user: %s", db_error(db));
		return LOGIN_TEMP;
	}
	if (!credentials_ok(lj))
		return LOGIN_BAD;
	lj->verified = true;
	status = db->ops->lock_acquire(db, lj->user.uid, lj->owner, lj->cfg->lock_lease);
	if (status == DB_CONFLICT) {
		snprintf(lj->error, sizeof lj->error, "maildrop is locked by another session");
		return LOGIN_IN_USE;
	}
	if (status != DB_OK) {
		snprintf(lj->error, sizeof lj->error, "taking the maildrop lock: %s", db_error(db));
		return LOGIN_TEMP;
	}
	const struct maildrop_ops *md = maildrop_backend(lj->cfg);
	char err[256] = "no maildrop backend for this Mailbox setting";
	double listing_start = metrics_now();
	status = md ? md->open(db, lj->cfg, &lj->user, &lj->maildrop, err, sizeof err) : DB_PERMFAIL;
	metrics_job_observe(JOB_LISTING, metrics_now() - listing_start);
	if (status != DB_OK) {
		db->ops->lock_release(db, lj->user.uid, lj->owner);
		snprintf(lj->error, sizeof lj->error, "opening the maildrop: %s", err);
		return status == DB_PERMFAIL ? LOGIN_PERM : LOGIN_TEMP;
	}
	return LOGIN_OK;
}

static void login_work(struct session_job *sj)
{
	struct login_job *lj = (struct login_job *)sj;
	struct db *db = worker_db(lj->error, sizeof lj->error);
	if (db == NULL) {
		lj->result = LOGIN_TEMP;
		return;
	}
	/* the stand-in for unknown users is measured before the first check */
	auth_standin_calibrate(db);
	lj->result = login_check(lj, db);
	if (lj->result == LOGIN_TEMP)
		worker_db_discard(); /* reconnect for the next job */
}

static void auth_delay_over(struct session *s)
{
	reply_err(s, "[AUTH] Authentication failed");
}

/* ---- the attempt: its place in the brute-force records ---- */

struct pop3_attempt {
	struct auth_attempt rec;
	struct timespec asked;   /* when the client asked (CLOCK_MONOTONIC) */
	struct timespec checked; /* when the check could start */
	struct event *hold;      /* the wait for the slot, or NULL */
	void (*go)(struct session *s, void *arg);
	void (*cancel)(void *arg);
	void *arg;
};


static struct pop3_attempt *attempt_new(struct session *s, const char *login, size_t len)
{
	struct pop3_attempt *a = xcalloc(1, sizeof *a);
	char network[AUTH_NETWORK_SIZE];
	auth_penalty_network((const struct sockaddr *)&s->peer, network, sizeof network);
	char *canonical = auth_login_canonical(login, len);
	auth_attempt_init(&a->rec, network, canonical);
	free(canonical);
	clock_gettime(CLOCK_MONOTONIC, &a->asked);
	a->checked = a->asked;
	return a;
}

/* No failure is answered sooner than this after its check began:
 * AuthFailureDelay, and at least comfortably more than a check of the
 * costliest stored scheme takes (the stand-in's measured cost, plus the
 * user look-up and the worker queue), so that neither the scheme of a
 * user nor whether the user exists shows in the answer's time. */
#define STANDIN_MARGIN 1.5
#define STANDIN_OVERHEAD 0.05 /* seconds */
#define STANDIN_FLOOR_MAX 5.0
static double failure_floor(const struct config *cfg)
{
	double cost = STANDIN_MARGIN * auth_standin_seconds() + STANDIN_OVERHEAD;
	if (cost > STANDIN_FLOOR_MAX)
		cost = STANDIN_FLOOR_MAX;
	return cfg->auth_failure_delay > cost ? cfg->auth_failure_delay : cost;
}

/* Ends the session's attempt; for a failure, the seconds its answer is
 * still to be held back. */
static double attempt_end(struct session *s, enum auth_outcome outcome)
{
	struct pop3_attempt *a = s->attempt;
	if (a == NULL)
		return 0;
	s->attempt = NULL;
	int delay = auth_attempt_end(&a->rec, outcome, s->cfg->auth_failure_delay,
				     s->cfg->auth_failure_delay_max);
	/* A failure is answered `delay` after the client asked (a hold
	 * already spent counts), and never sooner than AuthFailureDelay
	 * after the check could start: so the answer does not tell how long
	 * the check took, which depends on the stored scheme and on whether
	 * the user exists. */
	double due = delay - seconds_since(&a->asked);
	double floor = failure_floor(s->cfg) - seconds_since(&a->checked);
	free(a);
	if (outcome != AUTH_OUTCOME_FAILURE)
		return 0;
	if (due > 0) /* the brute-force delay, not just the timing floor */
		metrics_login_hold(HOLD_AFTER_FAILURE);
	return due > floor ? due : floor;
}

void pop3_attempt_abandon(struct session *s)
{
	attempt_end(s, AUTH_OUTCOME_NONE);
}

/* The rest of a failed login: logged, answered after the delay. */
static void answer_failure(struct session *s, const char *login, const char *method,
			   const char *reason)
{
	/* the log line fail2ban-style tools match (docs/SECURITY.md): the
	 * login is the client's text, escaped so that it cannot forge the
	 * from= field after it */
	char user[LOG_FIELD_SIZE];
	log_info("auth failed: user=%s from=%s method=%s reason=%s",
		 log_field_str(user, sizeof user, login), s->peer_text, method, reason);
	if (s->attempt == NULL) {
		/* failed before any check (a malformed SASL identity): it
		 * still counts */
		s->attempt = attempt_new(s, login ? login : "", login ? strlen(login) : 0);
		auth_attempt_take(&s->attempt->rec, s->cfg->auth_failure_delay,
				  s->cfg->auth_failure_delay_max);
	}
	double delay = attempt_end(s, AUTH_OUTCOME_FAILURE);
	metrics_login(method, LOGIN_RESULT_FAILED);
	session_delay(s, delay > 0 ? (long)(delay * 1000) : 0, auth_delay_over);
}

void pop3_login_failed(struct session *s, const char *login, const char *method,
		       const char *reason)
{
	answer_failure(s, login, method, reason);
}

static void login_finish(struct session_job *sj)
{
	struct login_job *lj = (struct login_job *)sj;
	struct session *s = sj->session;
	if (lj->result == LOGIN_OK) {
		/* even when closing: the lock must be released (session_free) */
		s->user = lj->user;
		lj->user = (struct user){0};
		s->maildrop = lj->maildrop;
		s->messages = lj->maildrop->count;
		s->locked = true;
		snprintf(s->lock_owner, sizeof s->lock_owner, "%s", lj->owner);
	}
	if (lj->result != LOGIN_BAD) {
		attempt_end(s, lj->verified ? AUTH_OUTCOME_SUCCESS : AUTH_OUTCOME_NONE);
		/* failures are counted by answer_failure */
		metrics_login(lj->mechanism, (enum metric_login_result)lj->result);
	}
	char user[LOG_FIELD_SIZE];
	log_field_str(user, sizeof user, lj->result == LOGIN_OK ? s->user.login : lj->login);
	switch (lj->result) {
	case LOGIN_OK:
		log_info("login: user=%s from=%s method=%s tls=%s messages=%zu", user,
			 s->peer_text, lj->mechanism, s->tls ? "yes" : "no", s->maildrop->count);
		pop3_trans_begin(s);
		break;
	case LOGIN_BAD:
		answer_failure(s, lj->login, lj->mechanism, lj->error);
		break;
	case LOGIN_IN_USE:
		log_info("login refused: user=%s from=%s reason=%s", user, s->peer_text,
			 lj->error);
		reply_err(s, "[IN-USE] Maildrop is locked by another session");
		break;
	case LOGIN_TEMP:
		log_error("login failed: user=%s from=%s: %s", user, s->peer_text, lj->error);
		reply_err(s, "[SYS/TEMP] Temporary failure, try again later");
		break;
	case LOGIN_PERM:
		log_error("login failed: user=%s from=%s: %s", user, s->peer_text, lj->error);
		reply_err(s, "[SYS/PERM] Maildrop not available, contact the administrator");
		break;
	}
	if (lj->secret != NULL)
		free_secret(lj->secret, lj->secret_len);
	user_clear(&lj->user);
	free(lj->login);
	free(lj);
}

/* The slot is looked for again in short steps: another attempt may free
 * it sooner. */
#define HOLD_STEP_MS 250

/* The session closed during the hold (the client left, SIGTERM, a
 * timeout): nobody to answer, so the check does not run at all (running
 * it would let a client skip the hold by hanging up), and takes no slot
 * (a guesser who hangs up does not fill the queue for the checks of
 * others). */
static void hold_cancel(struct session *s)
{
	struct pop3_attempt *a = s->attempt;
	event_free(a->hold);
	a->hold = NULL;
	a->cancel(a->arg);
	attempt_end(s, AUTH_OUTCOME_NONE);
}

static void hold_step(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	struct pop3_attempt *a = s->attempt;
	long wait = auth_attempt_start(&a->rec, s->cfg->auth_failure_delay,
				       s->cfg->auth_failure_delay_max);
	if (wait > 0) {
		if (wait > HOLD_STEP_MS)
			wait = HOLD_STEP_MS;
		struct timeval tv = {0, (suseconds_t)wait * 1000};
		evtimer_add(a->hold, &tv);
		return;
	}
	event_free(a->hold);
	a->hold = NULL;
	clock_gettime(CLOCK_MONOTONIC, &a->checked);
	session_hold_leave(s);
	a->go(s, a->arg);
}

void pop3_attempt_gate(struct session *s, const char *login, size_t login_len,
		       void (*go)(struct session *s, void *arg), void (*cancel)(void *arg),
		       void *arg)
{
	if (s->attempt != NULL && s->attempt->rec.started) {
		/* the check began earlier in this SASL exchange */
		go(s, arg);
		return;
	}
	if (s->attempt == NULL)
		s->attempt = attempt_new(s, login, login_len);
	struct pop3_attempt *a = s->attempt;
	a->go = go;
	a->cancel = cancel;
	a->arg = arg;
	long wait = auth_attempt_start(&a->rec, s->cfg->auth_failure_delay,
				       s->cfg->auth_failure_delay_max);
	if (wait == 0) {
		go(s, arg);
		return;
	}
	/* Held before the check, right or wrong: a guesser who hangs up when
	 * no quick +OK comes learns nothing from the silence. The session
	 * reads no command meanwhile; its end cancels the hold at once. */
	metrics_login_hold(HOLD_BEFORE_CHECK);
	a->hold = evtimer_new(s->loop->base, hold_step, s);
	session_hold_enter(s, hold_cancel);
	struct timeval tv = {0, (suseconds_t)(wait > HOLD_STEP_MS ? HOLD_STEP_MS : wait) * 1000};
	evtimer_add(a->hold, &tv);
}

static void login_go(struct session *s, void *arg)
{
	struct login_job *lj = arg;
	session_submit(s, &lj->sj, true);
}

static void login_cancel(void *arg)
{
	struct login_job *lj = arg;
	if (lj->secret != NULL)
		free_secret(lj->secret, lj->secret_len);
	free(lj->login);
	free(lj);
}

void pop3_login_start(struct session *s, enum login_method method, const char *mechanism,
		      const char *login, size_t login_len, const char *secret, size_t secret_len)
{
	struct login_job *lj = xcalloc(1, sizeof *lj);
	lj->sj.work = login_work;
	lj->sj.finish = login_finish;
	lj->sj.job.kind = JOB_LOGIN;
	lj->cfg = s->cfg;
	lj->method = method;
	lj->mechanism = mechanism;
	lj->login = xstrndup(login, login_len);
	if (secret != NULL) {
		lj->secret = xstrndup(secret, secret_len);
		lj->secret_len = secret_len;
	}
	snprintf(lj->apop_timestamp, sizeof lj->apop_timestamp, "%s", s->apop_timestamp);
	snprintf(lj->owner, sizeof lj->owner, "%s:%d:%llu:%08x", s->cfg->hostname, (int)getpid(),
		 (unsigned long long)s->id, arc4random());
	pop3_attempt_gate(s, login, login_len, login_go, login_cancel, lj);
}

static bool peer_is_loopback(const struct session *s)
{
	if (s->peer.ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)&s->peer;
		return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	}
	if (s->peer.ss_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)&s->peer)->sin6_addr;
		return IN6_IS_ADDR_LOOPBACK(a) ||
		       (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
	}
	return false;
}

bool pop3_auth_allowed(const struct session *s)
{
	return !s->cfg->require_tls || s->tls || (s->cfg->plaintext_loopback && peer_is_loopback(s));
}

/* The refusal RequireTLS prescribes; true when it was sent. */
static bool refuse_plaintext(struct session *s)
{
	if (pop3_auth_allowed(s))
		return false;
	metrics_connection_refused(REFUSED_TLS_REQUIRED);
	reply_err(s, "[AUTH] Plaintext authentication disallowed, TLS required (use STLS)");
	return true;
}

static void cmd_user(struct session *s, const struct pop3_command *c)
{
	if (refuse_plaintext(s))
		return;
	free(s->user_arg);
	s->user_arg = xstrndup(c->arg[0], c->arg_len[0]);
	reply_ok(s, "Send PASS");
}

static void cmd_pass(struct session *s, const struct pop3_command *c)
{
	if (refuse_plaintext(s))
		return;
	if (s->user_arg == NULL) {
		reply_err(s, "Send USER first");
		return;
	}
	char *login = s->user_arg;
	s->user_arg = NULL; /* a failed PASS starts over at USER (RFC 1939) */
	pop3_login_start(s, LOGIN_USER_PASS, "USER", login, strlen(login), c->arg[0],
			 c->arg_len[0]);
	free(login);
}

static void cmd_apop(struct session *s, const struct pop3_command *c)
{
	if (!s->cfg->apop) {
		reply_err(s, "APOP is not offered (no timestamp in the greeting)");
		return;
	}
	if (refuse_plaintext(s))
		return;
	free(s->user_arg);
	s->user_arg = NULL;
	pop3_login_start(s, LOGIN_APOP, "APOP", c->arg[0], c->arg_len[0], c->arg[1], c->arg_len[1]);
}

static void cmd_stls(struct session *s, const struct pop3_command *c)
{
	if (s->tls) {
		reply_err(s, "Already using TLS");
		return;
	}
	if (!tls_available()) {
		reply_err(s, "STLS not available: no TLS certificate is configured");
		return;
	}
	/* Nothing said in the clear carries over into TLS (RFC 3207 section
	 * 4.2 by analogy): a USER sent before STLS, perhaps injected by a man
	 * in the middle, is forgotten like the pipelined input. */
	free(s->user_arg);
	s->user_arg = NULL;
	reply_ok(s, "Begin TLS negotiation");
	session_start_tls(s);
}

static void cmd_auth(struct session *s, const struct pop3_command *c)
{
	if (refuse_plaintext(s))
		return;
	pop3_auth_command(s, c);
}

static void cmd_capa(struct session *s, const struct pop3_command *c)
{
	pop3_capa(s);
}

static void cmd_quit(struct session *s, const struct pop3_command *c)
{
	reply_ok(s, "tpops signing off");
	session_close(s, "QUIT");
}

void pop3_capa(struct session *s)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	evbuffer_add_printf(out, "+OK Capability list follows\r\n"
				 "TOP\r\n"
				 "UIDL\r\n"
				 "PIPELINING\r\n"
				 "RESP-CODES\r\n"
				 "AUTH-RESP-CODE\r\n"
				 "EXPIRE NEVER\r\n");
	/* The same list in every state: RFC 2449 section 5 wants what
	 * AUTHORIZATION offers announced in TRANSACTION too, and each of
	 * these is defined as "announced states: both, possible differences:
	 * no" (USER in RFC 2449 section 6.2, SASL in RFC 5034, STLS in RFC
	 * 2595 section 4). What would only earn "TLS required" is not
	 * offered; after a login it was not either, as the session could
	 * log in. */
	if (pop3_auth_allowed(s)) {
		evbuffer_add_printf(out, "USER\r\n");
		if (s->cfg->auth_mechanisms[0] != NULL) {
			evbuffer_add_printf(out, "SASL");
			for (char **m = s->cfg->auth_mechanisms; *m != NULL; m++)
				evbuffer_add_printf(out, " %s", *m);
			evbuffer_add_printf(out, "\r\n");
		}
	}
	if (!s->tls && tls_available())
		evbuffer_add_printf(out, "STLS\r\n");
	evbuffer_add_printf(out, "IMPLEMENTATION tpops-" TPOPS_VERSION "\r\n.\r\n");
	s->bad_commands = 0;
}

static const struct {
	enum pop3_cmd cmd;
	void (*handler)(struct session *s, const struct pop3_command *c);
} auth_commands[] = {
	{CMD_USER, cmd_user}, {CMD_PASS, cmd_pass}, {CMD_APOP, cmd_apop},
	{CMD_AUTH, cmd_auth}, {CMD_STLS, cmd_stls}, {CMD_CAPA, cmd_capa},
	{CMD_QUIT, cmd_quit},
};

bool pop3_auth_dispatch(struct session *s, const struct pop3_command *c)
{
	for (size_t i = 0; i < sizeof auth_commands / sizeof auth_commands[0]; i++) {
		if (auth_commands[i].cmd == c->cmd) {
			auth_commands[i].handler(s, c);
			return true;
		}
	}
	return false;
}
