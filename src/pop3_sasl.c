/* AUTH (RFC 5034): drives one SASL exchange of sasl.c from the session.
 * The user lookup a mechanism needs mid-exchange (CRAM-MD5, SCRAM) runs on
 * a storage worker; the final login goes through pop3_login_start like
 * USER/PASS, so locks, logs and failure delays are the same. */
#include <assert.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "auth_secret.h"
#include "base64.h"
#include "buf.h"
#include "log.h"
#include "sasl.h"
#include "session.h"
#include "worker.h"
#include "xalloc.h"

static void sasl_continue(struct session *s, enum sasl_status status, struct buf *out);

static void sasl_done(struct session *s)
{
	sasl_free(s->sasl);
	s->sasl = NULL;
	s->sasl_waiting = false;
}

/* The SCRAM salt key for sasl_new: AuthSecret, or one derived from the
 * host name, which the credentials job replaces with the database's key
 * (auth_secret.h) before any salt is made. */
static void salt_key(const struct config *cfg, struct buf *key)
{
	if (cfg->auth_secret != NULL && strlen(cfg->auth_secret) >= SASL_SCRAM_SALT_KEY_MIN)
		buf_append_str(key, cfg->auth_secret);
	else
		buf_printf(key, "tpops SCRAM salt key of %s", cfg->hostname);
}

/* ---- the user lookup in the middle of CRAM-MD5 and SCRAM ---- */

struct credentials_job {
	struct session_job sj;
	const struct config *cfg;
	struct sasl *sasl; /* handed over by the session for the lookup, and back */
	int status;
	char error[256];
};

static void credentials_work(struct session_job *sj)
{
	struct credentials_job *cj = (struct credentials_job *)sj;
	struct db *db = worker_db(cj->error, sizeof cj->error);
	if (db == NULL) {
		cj->status = DB_TEMPFAIL;
		return;
	}
	struct buf key = BUF_INIT;
	if (auth_salt_key(cj->cfg, db, &key))
		sasl_set_salt_key(cj->sasl, (const unsigned char *)key.data, key.len);
	buf_wipe(&key);
	struct user u = {0};
	cj->status = db->ops->user_by_login(db, sasl_authcid(cj->sasl), &u);
	if (cj->status == DB_OK || cj->status == DB_NOT_FOUND) {
		/* unknown users go through the same steps and fail at the end */
		sasl_set_credentials(cj->sasl, cj->status == DB_OK ? u.passwd : NULL);
		cj->status = DB_OK;
	} else {
		snprintf(cj->error, sizeof cj->error, "%s", db_error(db));
		worker_db_discard();
	}
	user_clear(&u);
}

static void credentials_discard(struct session_job *sj)
{
	struct credentials_job *cj = (struct credentials_job *)sj;
	sasl_free(cj->sasl);
	free(cj);
}

static void credentials_finish(struct session_job *sj)
{
	struct credentials_job *cj = (struct credentials_job *)sj;
	struct session *s = sj->session;
	assert(s->sasl == NULL); /* handed over in credentials_go */
	s->sasl = cj->sasl;
	cj->sasl = NULL;
	if (cj->status != DB_OK) {
		log_error("AUTH from=%s: looking up the user: %s", s->peer_text, cj->error);
		reply_err(s, "[SYS/TEMP] Temporary failure, try again later");
		pop3_attempt_abandon(s);
		sasl_done(s);
	} else {
		struct buf out = BUF_INIT;
		sasl_continue(s, sasl_resume(s->sasl, &out), &out);
		buf_free(&out);
	}
	free(cj);
}

static void credentials_go(struct session *s, void *arg)
{
	struct credentials_job *cj = arg;
	assert(s->sasl != NULL);
	cj->sasl = s->sasl; /* the worker's until the job is back */
	s->sasl = NULL;
	session_submit(s, &cj->sj, true);
}

static void sasl_continue(struct session *s, enum sasl_status status, struct buf *out)
{
	const char *mech = sasl_mechanism(s->sasl);
	switch (status) {
	case SASL_CHALLENGE:
		reply_raw(s, "+ ", 2);
		reply_raw(s, out->data ? out->data : "", out->len);
		reply_raw(s, "\r\n", 2);
		s->sasl_waiting = true;
		return;
	case SASL_NEED_USER: {
		/* CRAM-MD5 and SCRAM check the proof right after this lookup:
		 * the brute-force gate comes before it, and the login at the
		 * end of the exchange goes through without a second wait */
		struct credentials_job *cj = xcalloc(1, sizeof *cj);
		cj->sj.work = credentials_work;
		cj->sj.finish = credentials_finish;
		cj->sj.discard = credentials_discard;
		cj->cfg = s->cfg;
		const char *login = sasl_authcid(s->sasl);
		pop3_attempt_gate(s, login, strlen(login), credentials_go, free, cj);
		return;
	}
	case SASL_VERIFY_PASSWORD: {
		size_t len = 0;
		const char *password = sasl_password(s->sasl, &len);
		const char *login = sasl_authcid(s->sasl);
		pop3_login_start(s, LOGIN_SASL_PASSWORD, mech, login, strlen(login), password, len);
		break;
	}
	case SASL_SUCCESS: {
		const char *login = sasl_authcid(s->sasl);
		pop3_login_start(s, LOGIN_SASL_VERIFIED, mech, login, strlen(login), NULL, 0);
		break;
	}
	case SASL_FAILURE:
		pop3_login_failed(s, sasl_authcid(s->sasl), mech, sasl_reason(s->sasl));
		break;
	case SASL_MALFORMED:
		pop3_attempt_abandon(s);
		log_info("AUTH %s from=%s: malformed exchange: %s", mech, s->peer_text,
			 sasl_reason(s->sasl));
		reply_err(s, "Malformed SASL exchange");
		break;
	case SASL_CANCELLED:
		pop3_attempt_abandon(s);
		reply_err(s, "AUTH cancelled");
		break;
	}
	sasl_done(s);
}

void pop3_sasl_response(struct session *s, const char *line, size_t len)
{
	s->sasl_waiting = false;
	struct buf out = BUF_INIT;
	sasl_continue(s, sasl_step(s->sasl, line, len, &out), &out);
	buf_free(&out);
}

static bool mechanism_enabled(const struct config *cfg, const char *name, size_t len)
{
	for (char **m = cfg->auth_mechanisms; *m != NULL; m++)
		if (strlen(*m) == len && strncasecmp(*m, name, len) == 0)
			return true;
	return false;
}

void pop3_auth_command(struct session *s, const struct pop3_command *c)
{
	if (c->nargs == 0) { /* the mechanism list, as older clients ask */
		struct evbuffer *out = bufferevent_get_output(s->bev);
		evbuffer_add_printf(out, "+OK Supported mechanisms follow\r\n");
		for (char **m = s->cfg->auth_mechanisms; *m != NULL; m++)
			evbuffer_add_printf(out, "%s\r\n", *m);
		evbuffer_add_printf(out, ".\r\n");
		return;
	}
	if (!mechanism_enabled(s->cfg, c->arg[0], c->arg_len[0])) {
		reply_err(s, "Unsupported authentication mechanism");
		return;
	}
	char mech[64];
	snprintf(mech, sizeof mech, "%.*s", (int)c->arg_len[0], c->arg[0]);

	char cram[160];
	uint64_t r;
	arc4random_buf(&r, sizeof r);
	snprintf(cram, sizeof cram, "<%d.%016llx@%s>", (int)getpid(), (unsigned long long)r,
		 s->cfg->hostname);
	unsigned char nonce_bytes[18];
	char nonce[BASE64_ENCODED_LEN(sizeof nonce_bytes) + 1];
	arc4random_buf(nonce_bytes, sizeof nonce_bytes);
	base64_encode(nonce_bytes, sizeof nonce_bytes, nonce);
	struct buf key = BUF_INIT;
	salt_key(s->cfg, &key);
	struct sasl_setup setup = {
		.cram_challenge = cram,
		.scram_nonce = nonce,
		.scram_salt_key = (const unsigned char *)key.data,
		.scram_salt_key_len = key.len,
	};
	s->sasl = sasl_new(mech, &setup); /* copies what it keeps */
	buf_wipe(&key);
	if (s->sasl == NULL) {
		reply_err(s, "Unsupported authentication mechanism");
		return;
	}
	struct buf out = BUF_INIT;
	enum sasl_status status = c->nargs == 2 ? sasl_start(s->sasl, c->arg[1], c->arg_len[1], &out)
						: sasl_start(s->sasl, NULL, 0, &out);
	sasl_continue(s, status, &out);
	buf_free(&out);
}
