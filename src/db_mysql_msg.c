/* The MySQL engine's messages: listing, reading in pieces, deleting at
 * QUIT, storing a delivery under the quota.
 *
 * A message is header || body || its msg_part rows. Reading any part of a
 * LONGBLOB makes InnoDB materialise the whole value, so a message streams
 * out with SUBSTRING() pieces of columns that are at most MYSQL_INLINE_MAX
 * long, and a larger message keeps its body in msg_part rows of
 * MYSQL_PART_SIZE, each read for the price of its own size (docs/mysql.md
 * has the measurements). */
#include <mysql.h>
#include <mysqld_error.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_mysql.h"
#include "tpops_limits.h"
#include "xalloc.h"

struct listing {
	int64_t uid;
	struct db_msg **msgs_r;
	size_t *count_r;
};

static int msg_list_once(struct db_mysql *d, void *arg)
{
	struct listing *l = arg;
	struct db_msg **msgs_r = l->msgs_r;
	size_t *count_r = l->count_r;
	int64_t uid = l->uid;
	MYSQL_BIND param;
	dbm_bind_i64(&param, &uid);
	MYSQL_STMT *s = dbm_stmt(d, ST_MSG_LIST);
	int status = dbm_execute(d, s, &param, "listing messages");
	if (status != DB_OK)
		return status;
	int64_t id = 0, size = 0;
	char stamp[32];
	unsigned long stamp_len = 0;
	char uidl[POP3_MAX_UIDL + 1];
	unsigned long uidl_len = 0;
	my_bool is_null[4] = {0};
	MYSQL_BIND out[4];
	dbm_bind_out_i64(&out[0], &id, &is_null[0]);
	dbm_bind_out_i64(&out[1], &size, &is_null[1]);
	memset(&out[2], 0, sizeof out[2]);
	out[2].buffer_type = MYSQL_TYPE_STRING;
	out[2].buffer = stamp;
	out[2].buffer_length = sizeof stamp;
	out[2].length = &stamp_len;
	out[2].is_null = &is_null[2];
	memset(&out[3], 0, sizeof out[3]);
	out[3].buffer_type = MYSQL_TYPE_STRING;
	out[3].buffer = uidl;
	out[3].buffer_length = sizeof uidl;
	out[3].length = &uidl_len;
	out[3].is_null = &is_null[3];
	if (mysql_stmt_bind_result(s, out) != 0) {
		status = dbm_fail_stmt(d, s, "listing messages");
		dbm_done(s);
		return status;
	}
	size_t count = 0, cap = 16;
	struct db_msg *msgs = xmalloc(cap * sizeof *msgs);
	while ((status = dbm_fetch(d, s, NULL, "listing messages")) == DB_OK) {
		if (count == cap) {
			cap *= 2;
			msgs = xrealloc(msgs, cap * sizeof *msgs);
		}
		struct db_msg *m = &msgs[count++];
		m->id = id;
		m->size = (uint64_t)size;
		/* LENGTH() would read every message whole; nothing above
		 * the interface needs the stored octet count */
		m->raw_size = (uint64_t)size;
		/* timestamp + 0: 14 digits, or "0" for a zero date */
		size_t n = is_null[2] ? 0 : stamp_len < sizeof m->timestamp ? stamp_len : sizeof m->timestamp - 1;
		memcpy(m->timestamp, stamp, n);
		m->timestamp[n] = '\0';
		/* VARCHAR(70): a longer value cannot be there */
		size_t un = is_null[3] || uidl_len > POP3_MAX_UIDL ? 0 : uidl_len;
		memcpy(m->uidl, uidl, un);
		m->uidl[un] = '\0';
	}
	dbm_done(s);
	if (status != DB_NOT_FOUND) {
		free(msgs);
		return status;
	}
	*msgs_r = msgs;
	*count_r = count;
	return DB_OK;
}

/* What ST_MSG_PIECE found: the two column lengths, whether msg_part rows
 * follow, and how many octets it copied. */
struct column_piece {
	uint64_t header_len, body_len;
	bool has_parts;
	size_t got;
};

/* Reads up to len octets of header || body from offset into buf, in one
 * statement with the lengths it needs to check what came. */
static int read_columns(struct db_mysql *d, int64_t msg_id, uint64_t offset, char *buf,
			size_t len, struct column_piece *cp)
{
	int64_t from = (int64_t)offset, want = (int64_t)len;
	MYSQL_BIND params[7];
	for (int i = 0; i < 6; i += 2) { /* the statement asks for (offset, length) three times */
		dbm_bind_i64(&params[i], &from);
		dbm_bind_i64(&params[i + 1], &want);
	}
	dbm_bind_i64(&params[6], &msg_id);
	MYSQL_STMT *s = dbm_stmt(d, ST_MSG_PIECE);
	int status = dbm_execute(d, s, params, "reading a message");
	if (status != DB_OK)
		return status;
	int64_t header_len = 0, body_len = 0, has_parts = 0;
	unsigned long header_got = 0, body_got = 0;
	my_bool is_null[5] = {0};
	MYSQL_BIND out[5];
	dbm_bind_out_i64(&out[0], &header_len, &is_null[0]);
	dbm_bind_out_i64(&out[1], &body_len, &is_null[1]);
	dbm_bind_out_len(&out[2], &header_got, &is_null[2]);
	dbm_bind_out_len(&out[3], &body_got, &is_null[3]);
	dbm_bind_out_i64(&out[4], &has_parts, &is_null[4]);
	status = dbm_fetch(d, s, out, "reading a message");
	if (status == DB_OK) {
		cp->header_len = (uint64_t)header_len;
		cp->body_len = (uint64_t)body_len;
		cp->has_parts = has_parts != 0;
		/* what the lengths say must come, and nothing more */
		uint64_t columns = cp->header_len + cp->body_len;
		uint64_t expected = offset < columns ? columns - offset : 0;
		if (expected > len)
			expected = len;
		if ((uint64_t)header_got + body_got != expected) {
			snprintf(d->error, sizeof d->error, "message %lld changed while read",
				 (long long)msg_id);
			status = DB_NOT_FOUND;
		}
	}
	if (status == DB_OK)
		status = dbm_fetch_bytes(d, s, 2, 0, buf, header_got, "reading a message");
	if (status == DB_OK)
		status = dbm_fetch_bytes(d, s, 3, 0, buf + header_got, body_got,
					 "reading a message");
	dbm_done(s);
	if (status == DB_NOT_FOUND && d->error[0] == '\0')
		snprintf(d->error, sizeof d->error, "message %lld is gone", (long long)msg_id);
	if (status == DB_OK)
		cp->got = (size_t)header_got + body_got;
	return status;
}

/* Reads up to len octets from offset of the msg_part rows of a message. */
static int read_parts(struct db_mysql *d, int64_t msg_id, uint64_t offset, char *buf, size_t len,
		      size_t *got_r)
{
	int64_t from = (int64_t)offset, lower = from - MYSQL_PART_MAX, upper = from + (int64_t)len;
	MYSQL_BIND params[4];
	dbm_bind_i64(&params[0], &from);
	dbm_bind_i64(&params[1], &msg_id);
	dbm_bind_i64(&params[2], &lower);
	dbm_bind_i64(&params[3], &upper);
	MYSQL_STMT *s = dbm_stmt(d, ST_MSG_PARTS);
	int status = dbm_execute(d, s, params, "reading a message");
	if (status != DB_OK)
		return status;
	int64_t pos = 0;
	unsigned long data_len = 0;
	my_bool is_null[2] = {0};
	MYSQL_BIND out[2];
	dbm_bind_out_i64(&out[0], &pos, &is_null[0]);
	dbm_bind_out_len(&out[1], &data_len, &is_null[1]);
	if (mysql_stmt_bind_result(s, out) != 0) {
		status = dbm_fail_stmt(d, s, "reading a message");
		dbm_done(s);
		return status;
	}
	size_t got = 0;
	while (got < len && (status = dbm_fetch(d, s, NULL, "reading a message")) == DB_OK) {
		if (data_len == 0) /* a part that ends before offset */
			continue;
		/* the pieces must follow each other without a gap */
		uint64_t start = (uint64_t)pos > offset ? (uint64_t)pos : offset;
		if (start != offset + got) {
			snprintf(d->error, sizeof d->error,
				 "message %lld: msg_part rows leave a gap at %llu", (long long)msg_id,
				 (unsigned long long)(offset + got));
			status = DB_PERMFAIL;
			break;
		}
		size_t n = data_len < len - got ? data_len : len - got;
		status = dbm_fetch_bytes(d, s, 1, 0, buf + got, (unsigned long)n, "reading a message");
		if (status != DB_OK)
			break;
		got += n;
	}
	dbm_done(s);
	if (status != DB_OK && status != DB_NOT_FOUND)
		return status;
	*got_r = got;
	return DB_OK;
}

struct piece {
	int64_t id;
	uint64_t offset;
	void *buf;
	size_t len;
	size_t *got_r;
};

static int msg_read_once(struct db_mysql *d, void *arg)
{
	struct piece *p = arg;
	d->error[0] = '\0';
	size_t len = p->len < d->read_max ? p->len : d->read_max; /* a reply must fit in a packet */
	size_t got = 0;
	int status;
	/* the later pieces of a message in parts: msg_part rows only */
	if (d->cached_id != p->id || p->offset < d->cached_columns_len) {
		struct column_piece cp;
		if ((status = read_columns(d, p->id, p->offset, p->buf, len, &cp)) != DB_OK)
			return status;
		got = cp.got;
		d->cached_id = p->id;
		d->cached_columns_len = cp.header_len + cp.body_len;
		d->cached_has_parts = cp.has_parts;
	}
	uint64_t columns_len = d->cached_columns_len;
	if (got < len && d->cached_has_parts) {
		size_t more = 0;
		status = read_parts(d, p->id, p->offset + got - columns_len, (char *)p->buf + got,
				    len - got, &more);
		if (status != DB_OK)
			return status;
		got += more;
	}
	*p->got_r = got;
	return DB_OK;
}

#define TXN_LOST "the server ended the transaction without saying so (a conflict on Galera)"

/* Is message id there, as this connection sees it: DB_OK, DB_NOT_FOUND,
 * or an error. The checks around a COMMIT ask it: a transaction that the
 * server ended without saying so (dbm_begin) loses its rows, and its
 * COMMIT commits nothing. */
static int msg_present(struct db_mysql *d, int64_t id)
{
	MYSQL_BIND param;
	dbm_bind_i64(&param, &id);
	int64_t found = 0;
	return dbm_query_i64(d, ST_MSG_EXISTS, &param, &found, "checking a message");
}

struct deletion {
	int64_t uid;
	const char *owner;
	const int64_t *ids;
	size_t count;
};

/* QUIT: safe to run again, also after a COMMIT whose answer was lost (ids
 * are never reused: a message deleted once is not found again, and the
 * lease is still this server's until it releases it after QUIT). */
static int msg_delete_once(struct db_mysql *d, void *arg)
{
	const struct deletion *del = arg;
	int64_t uid = del->uid;
	static const enum stmt_id uses[] = {ST_LOCK_CLAIM, ST_MSG_DELETE, ST_MSG_PART_DELETE,
					    ST_LOCK_CONFIRM, ST_MSG_EXISTS};
	int64_t witness = 0; /* a message this transaction deletes */
	int status = dbm_begin(d, uses, sizeof uses / sizeof uses[0]);
	if (status != DB_OK)
		return status;
	/* A write on the lease row, in the deleting transaction: on one
	 * server its row lock keeps the lease from passing to another server
	 * before the commit; on Galera, a server that took it meanwhile
	 * through another node conflicts at certification, and then this
	 * runs again and finds the lease gone. */
	unsigned long owner_len;
	MYSQL_BIND claim[2];
	dbm_bind_i64(&claim[0], &uid);
	dbm_bind_text(&claim[1], del->owner, &owner_len);
	uint64_t matched = 0;
	status = dbm_exec_stmt(d, ST_LOCK_CLAIM, claim, "checking the lock", &matched);
	status = dbm_changed_one(status, matched);
	if (status == DB_NOT_FOUND) { /* the lease was lost: someone else may hold it */
		snprintf(d->error, sizeof d->error, "the maildrop lock was lost");
		goto fail;
	}
	if (status != DB_OK)
		goto fail;
	for (size_t i = 0; i < del->count; i++) {
		int64_t id = del->ids[i];
		MYSQL_BIND params[2];
		dbm_bind_i64(&params[0], &id);
		dbm_bind_i64(&params[1], &uid);
		uint64_t deleted = 0;
		status = dbm_exec_stmt(d, ST_MSG_DELETE, params, "deleting a message", &deleted);
		if (status == DB_OK && deleted > 0)
			status = dbm_exec_stmt(d, ST_MSG_PART_DELETE, params, "deleting a message", NULL);
		if (status != DB_OK)
			goto fail;
		if (deleted > 0)
			witness = id;
		if (d->cached_id == id)
			d->cached_id = 0;
	}
	/* The claim must still be in effect: had the server ended the
	 * transaction without saying so (dbm_begin), the deletes before that
	 * are undone and the ones after it are in a new transaction. That
	 * one is rolled back, and QUIT's deletions run again. */
	status = dbm_exec_stmt(d, ST_LOCK_CONFIRM, claim, "checking the lock", &matched);
	if (status == DB_OK && matched == 0)
		status = dbm_fail_code(d, ER_LOCK_DEADLOCK, TXN_LOST, "deleting messages");
	if (status != DB_OK || (status = dbm_commit(d)) != DB_OK)
		goto fail;
	/* where the check cannot run (the connection lost, say), the
	 * COMMIT's answer stands */
	if (witness != 0 && msg_present(d, witness) == DB_OK)
		return dbm_fail_code(d, ER_LOCK_DEADLOCK, TXN_LOST, "deleting messages");
	return DB_OK;
fail:
	dbm_rollback(d);
	return status;
}

int dbm_usage_of(struct db_mysql *d, int64_t uid, uint64_t *bytes_r)
{
	MYSQL_BIND param;
	dbm_bind_i64(&param, &uid);
	int64_t used = 0;
	int status = dbm_query_i64(d, ST_MSG_USAGE, &param, &used, "summing message sizes");
	if (status == DB_NOT_FOUND)
		status = DB_OK;
	*bytes_r = (uint64_t)used;
	return status;
}

struct usage {
	int64_t uid;
	uint64_t *bytes_r;
};

static int msg_usage_once(struct db_mysql *d, void *arg)
{
	struct usage *u = arg;
	return dbm_usage_of(d, u->uid, u->bytes_r);
}

/* Binds a column value; a long one is sent in pieces once the parameters
 * are bound (send_long_values), so that no second copy of it is made. */
static void bind_value(MYSQL_BIND *b, const void *p, size_t len, unsigned long *len_out)
{
	*len_out = (unsigned long)len;
	dbm_bind_bytes(b, len > MYSQL_LONG_DATA_PIECE ? NULL : p, len_out);
	if (len > MYSQL_LONG_DATA_PIECE) {
		b->buffer_type = MYSQL_TYPE_LONG_BLOB;
		b->buffer_length = 0;
	}
}

static int send_long_value(struct db_mysql *d, MYSQL_STMT *s, unsigned int param, const char *p,
			   size_t len)
{
	if (len <= MYSQL_LONG_DATA_PIECE)
		return DB_OK;
	for (size_t at = 0; at < len; at += MYSQL_LONG_DATA_PIECE) {
		size_t n = len - at < MYSQL_LONG_DATA_PIECE ? len - at : MYSQL_LONG_DATA_PIECE;
		if (mysql_stmt_send_long_data(s, param, p + at, (unsigned long)n) != 0)
			return dbm_fail_stmt(d, s, "storing a message");
	}
	return DB_OK;
}

/* The octets a large message keeps in msg_part: up to two pieces. */
struct spill {
	const char *p[2];
	size_t n[2];
};

static int store_parts(struct db_mysql *d, int64_t id, const struct spill *sp)
{
	size_t total = sp->n[0] + sp->n[1];
	char *seam = NULL; /* for the one part that straddles both pieces */
	int status = DB_OK;
	size_t part = d->part_size;
	for (size_t at = 0; at < total && status == DB_OK; at += part) {
		size_t n = total - at < part ? total - at : part;
		const char *data;
		if (at + n <= sp->n[0]) {
			data = sp->p[0] + at;
		} else if (at >= sp->n[0]) {
			data = sp->p[1] + (at - sp->n[0]);
		} else {
			if (seam == NULL)
				seam = xmalloc(part);
			size_t first = sp->n[0] - at;
			memcpy(seam, sp->p[0] + at, first);
			memcpy(seam + first, sp->p[1], n - first);
			data = seam;
		}
		int64_t pos = (int64_t)at;
		unsigned long data_len = (unsigned long)n;
		MYSQL_BIND params[3];
		dbm_bind_i64(&params[0], &id);
		dbm_bind_i64(&params[1], &pos);
		dbm_bind_bytes(&params[2], data, &data_len);
		status = dbm_exec_stmt(d, ST_MSG_PART_INSERT, params, "storing a message", NULL);
	}
	free(seam);
	return status;
}

/* uidl: NULL for mail delivered here, else the imported UIDL. */
struct delivery {
	int64_t uid, quota;
	const char *header, *body;
	size_t header_len, body_len;
	uint64_t size;
	const char *uidl;
};

/* A delivery runs again after a conflict, or after a connection lost
 * before COMMIT; never after one lost during COMMIT, which may have stored
 * the message (the MTA tries again later: DB_TEMPFAIL). */
static int msg_store_once(struct db_mysql *d, void *arg)
{
	const struct delivery *dl = arg;
	int64_t uid = dl->uid, quota = dl->quota;
	const char *header = dl->header, *body = dl->body;
	size_t header_len = dl->header_len, body_len = dl->body_len;
	uint64_t size = dl->size;
	const char *uidl = dl->uidl;
	MYSQL_STMT *s = NULL;
	enum stmt_id uses[7]; /* the statements below, each at most once */
	size_t n_uses = 0;
	uses[n_uses++] = ST_MSG_INSERT;
	uses[n_uses++] = ST_MSG_EXISTS;
	if (quota > 0) {
		uses[n_uses++] = ST_USER_CLAIM;
		uses[n_uses++] = ST_MSG_USAGE;
		uses[n_uses++] = ST_USER_UNCLAIM;
	}
	if (uidl != NULL)
		uses[n_uses++] = ST_IMPORTED_ADD;
	if (header_len + body_len > d->inline_max)
		uses[n_uses++] = ST_MSG_PART_INSERT;
	int status = dbm_begin(d, uses, n_uses);
	if (status != DB_OK)
		return status;
	MYSQL_BIND user_param;
	dbm_bind_i64(&user_param, &uid);
	if (quota > 0) {
		/* A write on the user's row: its row lock serialises the
		 * deliveries to one server, and on Galera two deliveries
		 * through two nodes conflict (one runs again and counts the
		 * other's message), so that both cannot fit under the quota.
		 * ST_USER_UNCLAIM puts the row back before COMMIT. */
		uint64_t matched = 0;
		status = dbm_exec_stmt(d, ST_USER_CLAIM, &user_param, "claiming the user's quota",
				       &matched);
		status = dbm_changed_one(status, matched);
		if (status == DB_NOT_FOUND) {
			snprintf(d->error, sizeof d->error,
				 "user %lld is gone, or its quota was removed", (long long)uid);
			goto fail;
		}
		uint64_t used = 0;
		if (status != DB_OK || (status = dbm_usage_of(d, uid, &used)) != DB_OK)
			goto fail;
		if (used + size > (uint64_t)quota) {
			snprintf(d->error, sizeof d->error,
				 "quota exceeded: %llu bytes stored + %llu > quota %lld",
				 (unsigned long long)used, (unsigned long long)size, (long long)quota);
			status = DB_QUOTA;
			goto fail;
		}
	}
	/* A message that fits is kept in header and body, as the seed kept
	 * it; a larger one keeps its header there (when that fits) and the
	 * rest in msg_part. */
	struct spill sp = {{NULL, NULL}, {0, 0}};
	const char *h = header, *b = body;
	size_t hl = header_len, bl = body_len;
	if (header_len + body_len > d->inline_max) {
		if (header_len <= d->inline_max) {
			sp = (struct spill){{body, NULL}, {body_len, 0}};
			b = "";
			bl = 0;
		} else {
			sp = (struct spill){{header, body}, {header_len, body_len}};
			h = b = "";
			hl = bl = 0;
		}
	}
	int64_t uid64 = uid, size64 = (int64_t)size;
	unsigned long lens[2];
	unsigned long uidl_len = 0;
	my_bool uidl_null = uidl == NULL;
	MYSQL_BIND params[5];
	dbm_bind_i64(&params[0], &uid64);
	bind_value(&params[1], h, hl, &lens[0]);
	bind_value(&params[2], b, bl, &lens[1]);
	dbm_bind_i64(&params[3], &size64);
	dbm_bind_text(&params[4], uidl, &uidl_len);
	params[4].is_null = &uidl_null;
	s = dbm_stmt(d, ST_MSG_INSERT);
	if (s == NULL) {
		status = d->broken ? DB_TEMPFAIL : DB_PERMFAIL;
		goto fail;
	}
	if (mysql_stmt_bind_param(s, params) != 0) {
		status = dbm_fail_stmt(d, s, "storing a message");
		goto fail;
	}
	bool long_data = hl > MYSQL_LONG_DATA_PIECE || bl > MYSQL_LONG_DATA_PIECE;
	if ((status = send_long_value(d, s, 1, h, hl)) != DB_OK ||
	    (status = send_long_value(d, s, 2, b, bl)) != DB_OK)
		goto fail;
	if (mysql_stmt_execute(s) != 0) {
		status = dbm_fail_stmt(d, s, "storing a message");
		goto fail;
	}
	int64_t id = (int64_t)mysql_stmt_insert_id(s);
	if (long_data)
		mysql_stmt_reset(s); /* forget the long data for the next use */
	if (uidl != NULL) {
		MYSQL_BIND rec[2];
		unsigned long rec_len;
		dbm_bind_i64(&rec[0], &uid64);
		dbm_bind_text(&rec[1], uidl, &rec_len);
		if ((status = dbm_exec_stmt(d, ST_IMPORTED_ADD, rec, "recording an imported UIDL",
					    NULL)) != DB_OK)
			goto fail;
	}
	if (sp.n[0] + sp.n[1] > 0) {
		if ((status = store_parts(d, id, &sp)) != DB_OK)
			goto fail;
		/* the parts commit only with their row: without a quota there
		 * is no release to tell a lost transaction (below) */
		if (quota <= 0 && (status = msg_present(d, id)) == DB_NOT_FOUND)
			status = dbm_fail_code(d, ER_LOCK_DEADLOCK, TXN_LOST, "storing a message");
		if (status != DB_OK)
			goto fail;
	}
	if (quota > 0) {
		uint64_t unclaimed = 0;
		status = dbm_exec_stmt(d, ST_USER_UNCLAIM, &user_param, "claiming the user's quota",
				       &unclaimed);
		if (status == DB_OK && unclaimed == 0) /* the claim is gone with the transaction */
			status = dbm_fail_code(d, ER_LOCK_DEADLOCK, TXN_LOST,
					       "claiming the user's quota");
		if (status != DB_OK)
			goto fail;
	}
	if ((status = dbm_commit(d)) != DB_OK)
		goto fail;
	/* nothing stored: the delivery runs again (where the check cannot
	 * run, the COMMIT's answer stands) */
	if (msg_present(d, id) == DB_NOT_FOUND)
		return dbm_fail_code(d, ER_LOCK_DEADLOCK, TXN_LOST, "storing a message");
	return DB_OK;
fail:
	if (s != NULL && !d->broken)
		mysql_stmt_reset(s);
	dbm_rollback(d);
	return status;
}

int mysql_msg_list(struct db *db, int64_t uid, struct db_msg **msgs_r, size_t *count_r)
{
	struct listing l = {uid, msgs_r, count_r};
	return dbm_run(db_mysql(db), DBM_REPEATABLE, msg_list_once, &l);
}

/* Fills buf unless the message ends first (the db.h contract): a reply
 * holds at most read_max octets, so a small max_allowed_packet takes
 * several statements. */
int mysql_msg_read(struct db *db, int64_t id, uint64_t offset, void *buf, size_t len,
		   size_t *got_r)
{
	struct db_mysql *d = db_mysql(db);
	size_t got = 0;
	while (got < len) {
		size_t want = len - got, n = 0;
		struct piece p = {id, offset + got, (char *)buf + got, want, &n};
		int status = dbm_run(d, DBM_REPEATABLE, msg_read_once, &p);
		if (status != DB_OK)
			return status;
		got += n;
		/* less than one statement returns (read_max as it was set by
		 * the connection that read): the message ended */
		if (n < (want < d->read_max ? want : d->read_max))
			break;
	}
	*got_r = got;
	return DB_OK;
}

int mysql_msg_delete(struct db *db, int64_t uid, const char *owner, const int64_t *ids,
		     size_t count)
{
	struct deletion del = {uid, owner, ids, count};
	return dbm_run(db_mysql(db), DBM_REPEATABLE, msg_delete_once, &del);
}

int mysql_msg_store(struct db *db, int64_t uid, int64_t quota, const char *header,
		    size_t header_len, const char *body, size_t body_len, uint64_t size)
{
	struct delivery dl = {uid, quota, header, body, header_len, body_len, size, NULL};
	return dbm_run(db_mysql(db), DBM_ONCE, msg_store_once, &dl);
}

int mysql_msg_import(struct db *db, int64_t uid, const char *header, size_t header_len,
		     const char *body, size_t body_len, uint64_t size, const char *uidl)
{
	struct delivery dl = {uid, 0, header, body, header_len, body_len, size, uidl};
	return dbm_run(db_mysql(db), DBM_ONCE, msg_store_once, &dl);
}

static int msg_imported_once(struct db *db, int64_t uid,
			     void (*each)(const char *uidl, void *ctx), void *ctx)
{
	struct db_mysql *d = db_mysql(db);
	int status = dbm_ready(d);
	if (status != DB_OK)
		return status;
	MYSQL_BIND param;
	dbm_bind_i64(&param, &uid);
	MYSQL_STMT *s = dbm_stmt(d, ST_IMPORTED_LIST);
	if ((status = dbm_execute(d, s, &param, "listing imported UIDLs")) != DB_OK)
		return status;
	char uidl[POP3_MAX_UIDL + 1];
	unsigned long len = 0;
	my_bool is_null = 0;
	MYSQL_BIND out;
	memset(&out, 0, sizeof out);
	out.buffer_type = MYSQL_TYPE_STRING;
	out.buffer = uidl;
	out.buffer_length = sizeof uidl;
	out.length = &len;
	out.is_null = &is_null;
	if (mysql_stmt_bind_result(s, &out) != 0) {
		status = dbm_fail_stmt(d, s, "listing imported UIDLs");
		dbm_done(s);
		return status;
	}
	while ((status = dbm_fetch(d, s, NULL, "listing imported UIDLs")) == DB_OK) {
		if (is_null || len > POP3_MAX_UIDL)
			continue;
		uidl[len] = '\0';
		each(uidl, ctx);
	}
	dbm_done(s);
	return status == DB_NOT_FOUND ? DB_OK : status;
}

/* Not retried: each() may have seen rows already (tpops-import runs again). */
int mysql_msg_imported(struct db *db, int64_t uid, void (*each)(const char *uidl, void *ctx),
		       void *ctx)
{
	return msg_imported_once(db, uid, each, ctx);
}

int mysql_msg_usage(struct db *db, int64_t uid, uint64_t *bytes_r)
{
	struct usage u = {uid, bytes_r};
	return dbm_run(db_mysql(db), DBM_REPEATABLE, msg_usage_once, &u);
}
