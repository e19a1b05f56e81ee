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

#include "auth_penalty.h"
#include "buf.h"
#include "ioloop.h"
#include "log.h"
#include "password.h"
#include "sasl.h"
#include "session.h"
#include "tls.h"
#include "worker.h"
#include "xalloc.h"

enum login_result { LOGIN_OK, LOGIN_BAD, LOGIN_IN_USE, LOGIN_TEMP, LOGIN_PERM };

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
	/* the brute-force delay before the check (auth_penalty_pending) */
	int held; /* seconds */
	/* results */
	enum login_result result;
	struct user user;
	struct maildrop *maildrop;
	char error[512];
};

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
	default:
		match = password_verify(lj->user.passwd, lj->secret, lj->secret_len);
		/* A plaintext (or unusable) stored password is checked at once,
		 * while an unknown user costs the dummy hash: without this the
		 * time a wrong password takes tells which logins exist. A right
		 * password pays nothing extra (it reveals nothing). */
		if (match != 1 && (match < 0 || password_plaintext(lj->user.passwd) != NULL))
			password_verify_dummy(lj->secret, lj->secret_len);
		break;
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
			password_verify_dummy(lj->secret, lj->secret_len);
		snprintf(lj->error, sizeof lj->error, "unknown user");
		return LOGIN_BAD;
	}
	if (status != DB_OK) {
		snprintf(lj->error, sizeof lj->error, "looking up the user: %s", db_error(db));
		return LOGIN_TEMP;
	}
	if (!credentials_ok(lj))
		return LOGIN_BAD;
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
	status = md ? md->open(db, lj->cfg, &lj->user, &lj->maildrop, err, sizeof err) : DB_PERMFAIL;
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
	lj->result = login_check(lj, db);
	if (lj->result == LOGIN_TEMP)
		worker_db_discard(); /* reconnect for the next job */
}

static void auth_delay_over(struct session *s)
{
	reply_err(s, "[AUTH] Authentication failed");
}

/* A failed login whose answer has already been held back for `held`
 * seconds before the check: the rest of the delay the failure earns. */
static void login_failed(struct session *s, const char *login, const char *method,
			 const char *reason, int held)
{
	/* the log line fail2ban-style tools match (docs/SECURITY.md) */
	log_info("auth failed: user=%s from=%s method=%s reason=%s", login ? login : "",
		 s->peer_text, method, reason);
	int delay = auth_penalty_failure(s->peer_text, login, s->cfg->auth_failure_delay,
					 s->cfg->auth_failure_delay_max);
	session_delay(s, delay > held ? delay - held : 0, auth_delay_over);
}

void pop3_login_failed(struct session *s, const char *login, const char *method,
		       const char *reason)
{
	login_failed(s, login, method, reason, 0);
}

static void login_job_free(struct login_job *lj)
{
	if (lj->secret != NULL)
		free_secret(lj->secret, lj->secret_len);
	user_clear(&lj->user);
	free(lj->login);
	free(lj);
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
		s->locked = true;
		snprintf(s->lock_owner, sizeof s->lock_owner, "%s", lj->owner);
	}
	switch (lj->result) {
	case LOGIN_OK:
		auth_penalty_success(s->peer_text, s->user.login);
		log_info("login: user=%s from=%s method=%s tls=%s messages=%zu", s->user.login,
			 s->peer_text, lj->mechanism, s->tls ? "yes" : "no", s->maildrop->count);
		pop3_trans_begin(s);
		break;
	case LOGIN_BAD:
		login_failed(s, lj->login, lj->mechanism, lj->error, lj->held);
		break;
	case LOGIN_IN_USE:
		log_info("login refused: user=%s from=%s reason=%s", lj->login, s->peer_text,
			 lj->error);
		reply_err(s, "[IN-USE] Maildrop is locked by another session");
		break;
	case LOGIN_TEMP:
		log_error("login failed: user=%s from=%s: %s", lj->login, s->peer_text, lj->error);
		reply_err(s, "[SYS/TEMP] Temporary failure, try again later");
		break;
	case LOGIN_PERM:
		log_error("login failed: user=%s from=%s: %s", lj->login, s->peer_text, lj->error);
		reply_err(s, "[SYS/PERM] Maildrop not available, contact the administrator");
		break;
	}
	login_job_free(lj);
}

void pop3_login_start(struct session *s, enum login_method method, const char *mechanism,
		      const char *login, size_t login_len, const char *secret, size_t secret_len)
{
	struct login_job *lj = xcalloc(1, sizeof *lj);
	lj->sj.work = login_work;
	lj->sj.finish = login_finish;
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
	/* Once this address has several recent failures, every attempt from
	 * it waits what a failure would, before the check: a guesser who hangs
	 * up when no quick +OK comes learns nothing from the silence. */
	lj->held = auth_penalty_pending(s->peer_text, s->cfg->auth_failure_delay,
					s->cfg->auth_failure_delay_max);
	if (lj->held > 0) {
		/* a session that ends meanwhile (the client leaves, SIGTERM)
		 * has it checked at once, the answer going nowhere */
		session_hold(s, &lj->sj, lj->held);
		return;
	}
	session_submit(s, &lj->sj, true);
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
	if (session_start_tls(s) != 0) {
		log_error("from=%s: STLS: cannot set up TLS", s->peer_text);
		session_close(s, "STLS failed");
	}
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
	if (s->state != STATE_AUTHORIZATION) {
		/* RFC 2449 lists USER as a capability of the server; clients
		 * that ask again after login expect to see it */
		evbuffer_add_printf(out, "USER\r\n");
	} else {
		/* what would only earn "TLS required" is not offered */
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
	}
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
