/* AUTHORIZATION state: USER, PASS, APOP, AUTH, STLS, CAPA, QUIT, and the
 * login job that checks the password, takes the lock and lists the
 * maildrop on a storage worker. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "password.h"
#include "session.h"
#include "worker.h"
#include "xalloc.h"

enum login_result { LOGIN_OK, LOGIN_BAD, LOGIN_IN_USE, LOGIN_TEMP, LOGIN_PERM };

struct login_job {
	struct session_job sj;
	const struct config *cfg;
	char *login;
	char *password;
	size_t password_len;
	char *apop_digest; /* APOP instead of a password */
	char apop_timestamp[128];
	char owner[128];
	/* results */
	enum login_result result;
	struct user user;
	struct maildrop *maildrop;
	char error[512];
};

static enum login_result login_check(struct login_job *lj, struct db *db)
{
	int status = db->ops->user_by_login(db, lj->login, &lj->user);
	if (status == DB_NOT_FOUND) {
		/* an unknown user costs what a wrong password costs */
		if (lj->password != NULL)
			password_verify_dummy(lj->password, lj->password_len);
		snprintf(lj->error, sizeof lj->error, "unknown user");
		return LOGIN_BAD;
	}
	if (status != DB_OK) {
		snprintf(lj->error, sizeof lj->error, "looking up the user: %s", db_error(db));
		return LOGIN_TEMP;
	}
	int match = lj->apop_digest != NULL
			    ? password_apop_verify(lj->user.passwd, lj->apop_timestamp,
						   lj->apop_digest, strlen(lj->apop_digest))
			    : password_verify(lj->user.passwd, lj->password, lj->password_len);
	if (match != 1) {
		snprintf(lj->error, sizeof lj->error, "%s",
			 match < 0 ? "stored password has an unknown scheme or is malformed"
			 : lj->apop_digest != NULL && password_plaintext(lj->user.passwd) == NULL
				 ? "APOP needs a plaintext-stored password"
				 : "wrong password");
		return LOGIN_BAD;
	}
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

void pop3_auth_delay_over(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	reply_err(s, "[AUTH] Authentication failed");
	session_resume(s);
}

static void login_finish(struct session_job *sj)
{
	struct login_job *lj = (struct login_job *)sj;
	struct session *s = sj->session;
	const char *method = lj->apop_digest ? "APOP" : "USER";
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
		log_info("login: user=%s from=%s method=%s tls=no messages=%zu", s->user.login,
			 s->peer_text, method, s->maildrop->count);
		pop3_trans_begin(s);
		break;
	case LOGIN_BAD:
		/* the log line fail2ban-style tools match */
		log_info("auth failed: user=%s from=%s method=%s reason=%s", lj->login,
			 s->peer_text, method, lj->error);
		s->wait = WAIT_AUTH_DELAY;
		struct timeval delay = {s->cfg->auth_failure_delay, 0};
		evtimer_add(s->delay_timer, &delay);
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
	if (lj->password != NULL)
		free_secret(lj->password, lj->password_len);
	user_clear(&lj->user);
	free(lj->login);
	free(lj->apop_digest);
	bool delaying = lj->result == LOGIN_BAD;
	free(lj);
	if (!delaying)
		session_resume(s);
}

static void login_start(struct session *s, const char *login, size_t login_len,
			const char *password, size_t password_len, const char *digest,
			size_t digest_len)
{
	struct login_job *lj = xcalloc(1, sizeof *lj);
	lj->sj.work = login_work;
	lj->sj.finish = login_finish;
	lj->cfg = s->cfg;
	lj->login = xstrndup(login, login_len);
	if (password != NULL) {
		lj->password = xstrndup(password, password_len);
		lj->password_len = password_len;
	}
	if (digest != NULL)
		lj->apop_digest = xstrndup(digest, digest_len);
	snprintf(lj->apop_timestamp, sizeof lj->apop_timestamp, "%s", s->apop_timestamp);
	uint32_t nonce = arc4random();
	snprintf(lj->owner, sizeof lj->owner, "%s:%d:%llu:%08x", s->cfg->hostname, (int)getpid(),
		 (unsigned long long)s->id, nonce);
	session_submit(s, &lj->sj, true);
}

static void cmd_user(struct session *s, const struct pop3_command *c)
{
	free(s->user_arg);
	s->user_arg = xstrndup(c->arg[0], c->arg_len[0]);
	reply_ok(s, "Send PASS");
}

static void cmd_pass(struct session *s, const struct pop3_command *c)
{
	if (s->user_arg == NULL) {
		reply_err(s, "Send USER first");
		return;
	}
	char *login = s->user_arg;
	s->user_arg = NULL; /* a failed PASS starts over at USER (RFC 1939) */
	login_start(s, login, strlen(login), c->arg[0], c->arg_len[0], NULL, 0);
	free(login);
}

static void cmd_apop(struct session *s, const struct pop3_command *c)
{
	free(s->user_arg);
	s->user_arg = NULL;
	login_start(s, c->arg[0], c->arg_len[0], NULL, 0, c->arg[1], c->arg_len[1]);
}

static void cmd_auth(struct session *s, const struct pop3_command *c)
{
	reply_err(s, "Unsupported authentication mechanism");
}

static void cmd_stls(struct session *s, const struct pop3_command *c)
{
	reply_err(s, "STLS not available: no TLS certificate is configured");
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
	static const char capabilities[] = "+OK Capability list follows\r\n"
					   "TOP\r\n"
					   "USER\r\n"
					   "UIDL\r\n"
					   "PIPELINING\r\n"
					   "RESP-CODES\r\n"
					   "AUTH-RESP-CODE\r\n"
					   "EXPIRE NEVER\r\n"
					   "IMPLEMENTATION tpops-" TPOPS_VERSION "\r\n"
					   ".\r\n";
	reply_raw(s, capabilities, sizeof capabilities - 1);
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
