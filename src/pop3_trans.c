/* TRANSACTION and UPDATE states: STAT LIST RETR TOP DELE RSET UIDL NOOP
 * CAPA QUIT, the lease renewal and the commit of deletions at QUIT. The
 * messages of RETR and TOP stream out from pop3_stream.c. */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tpops_limits.h"
#include "log.h"
#include "metrics.h"
#include "session.h"
#include "worker.h"
#include "xalloc.h"

/* The message numbered n (1-based), or NULL with -ERR sent when there is
 * none or it is marked deleted. */
static struct maildrop_msg *message(struct session *s, uint32_t n)
{
	if (n == 0 || n > s->maildrop->count || s->deleted[n - 1]) {
		reply_err(s, "No such message");
		return NULL;
	}
	return &s->maildrop->msgs[n - 1];
}

static void maildrop_totals(struct session *s, size_t *count_r, uint64_t *octets_r)
{
	size_t count = 0;
	uint64_t octets = 0;
	for (size_t i = 0; i < s->maildrop->count; i++) {
		if (!s->deleted[i]) {
			count++;
			octets += s->maildrop->msgs[i].size;
		}
	}
	*count_r = count;
	*octets_r = octets;
}

void pop3_trans_begin(struct session *s)
{
	size_t n = s->maildrop->count;
	s->deleted = xcalloc(n ? n : 1, sizeof *s->deleted);
	s->retrieved = xcalloc(n ? n : 1, sizeof *s->retrieved);
	s->state = STATE_TRANSACTION;
	size_t count;
	uint64_t octets;
	maildrop_totals(s, &count, &octets);
	int period = s->cfg->lock_lease / 3 > 0 ? s->cfg->lock_lease / 3 : 1;
	struct timeval tv = {period, 0};
	event_add(s->lease_timer, &tv);
	reply_ok(s, "Logged in, %zu messages (%llu octets)", count, (unsigned long long)octets);
}

/* ---- lease ---- */

struct lease_job {
	struct session_job sj;
	int64_t uid;
	char owner[128];
	int lease;
	bool release;
	int status;
	char error[256];
};

static void lease_work(struct session_job *sj)
{
	struct lease_job *lj = (struct lease_job *)sj;
	struct db *db = worker_db(lj->error, sizeof lj->error);
	if (db == NULL) {
		lj->status = DB_TEMPFAIL;
		return;
	}
	lj->status = lj->release ? db->ops->lock_release(db, lj->uid, lj->owner)
				 : db->ops->lock_renew(db, lj->uid, lj->owner, lj->lease);
	if (lj->status < 0) {
		snprintf(lj->error, sizeof lj->error, "%s", db_error(db));
		worker_db_discard();
	}
}

static void lease_finish(struct session_job *sj)
{
	struct lease_job *lj = (struct lease_job *)sj;
	struct session *s = sj->session;
	if (lj->release) {
		s->locked = false; /* on failure the lease expires by itself */
		if (lj->status < 0)
			log_warn("user=%s: releasing the maildrop lock: %s (it expires by itself)",
				 s->user.login, lj->error);
	} else if (lj->status == DB_NOT_FOUND && s->state == STATE_TRANSACTION && !s->closing) {
		log_error("user=%s from=%s: the maildrop lock was lost; ending the session",
			  s->user.login, s->peer_text);
		s->locked = false;
		reply_err(s, "[IN-USE] Maildrop lock lost, closing connection");
		session_close(s, "lock lost");
	} else if (lj->status < 0) {
		log_warn("user=%s: renewing the maildrop lock: %s", s->user.login, lj->error);
	}
	free(lj);
}

static void lease_submit(struct session *s, bool release)
{
	struct lease_job *lj = xcalloc(1, sizeof *lj);
	lj->sj.work = lease_work;
	lj->sj.finish = lease_finish;
	lj->sj.job.kind = JOB_LEASE;
	lj->uid = s->user.uid;
	lj->lease = s->cfg->lock_lease;
	lj->release = release;
	snprintf(lj->owner, sizeof lj->owner, "%s", s->lock_owner);
	session_submit(s, &lj->sj, false);
}

void pop3_lease_tick(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	if (s->state == STATE_TRANSACTION && s->locked && !s->closing)
		lease_submit(s, false);
}

void pop3_release_lock(struct session *s)
{
	event_del(s->lease_timer);
	lease_submit(s, true);
}

/* ---- commands ---- */

static void cmd_stat(struct session *s, const struct pop3_command *c)
{
	size_t count;
	uint64_t octets;
	maildrop_totals(s, &count, &octets);
	reply_ok(s, "%zu %llu", count, (unsigned long long)octets);
}

/* LIST and UIDL: one message, or all that are not deleted. */
static void list_messages(struct session *s, const struct pop3_command *c, bool uidl)
{
	if (c->has_number) {
		struct maildrop_msg *m = message(s, c->number[0]);
		if (m == NULL)
			return;
		if (uidl)
			reply_ok(s, "%u %s", c->number[0], m->uidl);
		else
			reply_ok(s, "%u %llu", c->number[0], (unsigned long long)m->size);
		return;
	}
	struct evbuffer *out = bufferevent_get_output(s->bev);
	reply_ok(s, "%s", uidl ? "Unique-ID listing follows" : "Scan listing follows");
	for (size_t i = 0; i < s->maildrop->count; i++) {
		if (s->deleted[i])
			continue;
		if (uidl)
			evbuffer_add_printf(out, "%zu %s\r\n", i + 1, s->maildrop->msgs[i].uidl);
		else
			evbuffer_add_printf(out, "%zu %llu\r\n", i + 1,
					    (unsigned long long)s->maildrop->msgs[i].size);
	}
	evbuffer_add(out, ".\r\n", 3);
}

static void cmd_list(struct session *s, const struct pop3_command *c)
{
	list_messages(s, c, false);
}

static void cmd_uidl(struct session *s, const struct pop3_command *c)
{
	list_messages(s, c, true);
}

static void cmd_retr(struct session *s, const struct pop3_command *c)
{
	if (message(s, c->number[0]) != NULL)
		pop3_stream_start(s, c->number[0], -1);
}

static void cmd_top(struct session *s, const struct pop3_command *c)
{
	if (message(s, c->number[0]) != NULL)
		pop3_stream_start(s, c->number[0], c->number[1]);
}

static void cmd_dele(struct session *s, const struct pop3_command *c)
{
	if (message(s, c->number[0]) == NULL)
		return;
	s->deleted[c->number[0] - 1] = true;
	reply_ok(s, "Message %u deleted", c->number[0]);
}

static void cmd_rset(struct session *s, const struct pop3_command *c)
{
	memset(s->deleted, 0, s->maildrop->count * sizeof *s->deleted);
	size_t count;
	uint64_t octets;
	maildrop_totals(s, &count, &octets);
	reply_ok(s, "%zu messages (%llu octets)", count, (unsigned long long)octets);
}

static void cmd_noop(struct session *s, const struct pop3_command *c)
{
	reply_raw(s, "+OK\r\n", 5);
	s->bad_commands = 0;
}

static void cmd_capa(struct session *s, const struct pop3_command *c)
{
	pop3_capa(s);
}

struct commit_job {
	struct session_job sj;
	struct maildrop *maildrop; /* handed over by the session, and back */
	bool *deleted, *retrieved; /* handed over by the session, and back */
	int64_t uid;
	char owner[128];
	int status;
	bool released;
	char error[512];
};

static void commit_work(struct session_job *sj)
{
	struct commit_job *cj = (struct commit_job *)sj;
	struct db *db = worker_db(cj->error, sizeof cj->error);
	if (db == NULL) {
		cj->status = DB_TEMPFAIL;
		return;
	}
	cj->status = cj->maildrop->ops->commit(cj->maildrop, db, cj->owner, cj->deleted,
					       cj->retrieved, cj->error, sizeof cj->error);
	cj->released = db->ops->lock_release(db, cj->uid, cj->owner) >= 0;
	if (cj->status == DB_TEMPFAIL)
		worker_db_discard();
}

static void commit_finish(struct session_job *sj)
{
	struct commit_job *cj = (struct commit_job *)sj;
	struct session *s = sj->session;
	assert(s->maildrop == NULL);
	s->maildrop = cj->maildrop;
	s->deleted = cj->deleted;
	s->retrieved = cj->retrieved;
	s->locked = !cj->released;
	metrics_quit_commit(cj->status == DB_OK);
	if (cj->status == DB_OK) {
		for (size_t i = 0; i < s->maildrop->count; i++) {
			if (s->deleted[i]) {
				s->dele_count++;
				s->dele_octets += s->maildrop->msgs[i].size;
			}
		}
		metrics_messages_deleted(s->dele_count, s->dele_octets);
		reply_ok(s, "tpops signing off (%u messages deleted)", s->dele_count);
	} else {
		log_error("user=%s from=%s: deleting messages at QUIT: %s", s->user.login,
			  s->peer_text, cj->error);
		reply_err(s, "[SYS/TEMP] Messages could not be deleted; they are kept");
	}
	free(cj);
	session_close(s, "QUIT");
}

static void cmd_quit(struct session *s, const struct pop3_command *c)
{
	s->state = STATE_UPDATE;
	event_del(s->lease_timer);
	struct commit_job *cj = xcalloc(1, sizeof *cj);
	cj->sj.work = commit_work;
	cj->sj.finish = commit_finish;
	cj->sj.job.kind = JOB_COMMIT;
	/* The maildrop and the marks are the worker's until the job is back:
	 * a piece of an abandoned RETR may still be on another worker, with
	 * a reader of its own (pop3_stream.c) that does not need them. */
	assert(s->maildrop != NULL && s->deleted != NULL);
	cj->maildrop = s->maildrop;
	cj->deleted = s->deleted;
	cj->retrieved = s->retrieved;
	s->maildrop = NULL;
	s->deleted = s->retrieved = NULL;
	cj->uid = s->user.uid;
	snprintf(cj->owner, sizeof cj->owner, "%s", s->lock_owner);
	session_submit(s, &cj->sj, true);
}

static const struct {
	enum pop3_cmd cmd;
	void (*handler)(struct session *s, const struct pop3_command *c);
} trans_commands[] = {
	{CMD_STAT, cmd_stat}, {CMD_LIST, cmd_list}, {CMD_RETR, cmd_retr},
	{CMD_TOP, cmd_top},   {CMD_DELE, cmd_dele}, {CMD_RSET, cmd_rset},
	{CMD_UIDL, cmd_uidl}, {CMD_NOOP, cmd_noop}, {CMD_CAPA, cmd_capa},
	{CMD_QUIT, cmd_quit},
};

bool pop3_trans_dispatch(struct session *s, const struct pop3_command *c)
{
	if (s->state != STATE_TRANSACTION)
		return false;
	for (size_t i = 0; i < sizeof trans_commands / sizeof trans_commands[0]; i++) {
		if (trans_commands[i].cmd == c->cmd) {
			trans_commands[i].handler(s, c);
			return true;
		}
	}
	return false;
}
