/* The maildrop in the `msg` table of the SQL database (Mailbox: MySQL). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "maildrop.h"
#include "pop3_out.h"
#include "xalloc.h"

static int sql_open(struct db *db, const struct config *cfg, const struct user *u,
		    struct maildrop **md_r, char *err, size_t errlen)
{
	struct db_msg *rows = NULL;
	size_t count = 0;
	int status = db->ops->msg_list(db, u->uid, &rows, &count);
	if (status != DB_OK) {
		snprintf(err, errlen, "%s", db_error(db));
		return status;
	}
	struct maildrop *md = xcalloc(1, sizeof *md);
	md->ops = &maildrop_sql_ops;
	md->uid = u->uid;
	md->count = count;
	md->msgs = xcalloc(count ? count : 1, sizeof *md->msgs);
	for (size_t i = 0; i < count; i++) {
		struct maildrop_msg *m = &md->msgs[i];
		m->id = rows[i].id;
		m->size = rows[i].size;
		m->raw_size = rows[i].raw_size;
		if (rows[i].uidl[0] != '\0') {
			/* the UIDL it had on the server it came from */
			memcpy(m->uidl, rows[i].uidl, sizeof m->uidl);
			m->imported_uidl = true;
		} else {
			/* id.uid.timestamp, as the original TPOPS built it */
			snprintf(m->uidl, sizeof m->uidl, "%lld.%lld.%s", (long long)rows[i].id,
				 (long long)u->uid, rows[i].timestamp);
		}
	}
	free(rows);
	maildrop_keep_uidls_apart(md);
	*md_r = md;
	return DB_OK;
}

/* A message of the msg table is its id. */
struct sql_reader {
	struct maildrop_reader r;
	int64_t id;
};

static struct maildrop_reader *sql_reader_new(const struct maildrop *md, size_t index)
{
	struct sql_reader *sr = xcalloc(1, sizeof *sr);
	sr->r.ops = md->ops;
	sr->r.index = index;
	sr->id = md->msgs[index].id;
	return &sr->r;
}

static int sql_read(struct maildrop_reader *r, struct db *db, uint64_t offset, void *buf,
		    size_t len, size_t *got_r, char *err, size_t errlen)
{
	const struct sql_reader *sr = (const struct sql_reader *)r;
	int status = db->ops->msg_read(db, sr->id, offset, buf, len, got_r);
	if (status != DB_OK)
		snprintf(err, errlen, "%s", db_error(db));
	return status;
}

static void sql_reader_free(struct maildrop *md, struct maildrop_reader *r)
{
	free(r);
}

static int sql_commit(struct maildrop *md, struct db *db, const char *owner, const bool *deleted,
		      const bool *retrieved, char *err, size_t errlen)
{
	int64_t *ids = xcalloc(md->count ? md->count : 1, sizeof *ids);
	size_t n = 0;
	for (size_t i = 0; i < md->count; i++)
		if (deleted[i])
			ids[n++] = md->msgs[i].id;
	int status = DB_OK;
	if (n > 0) {
		status = db->ops->msg_delete(db, md->uid, owner, ids, n);
		if (status != DB_OK)
			snprintf(err, errlen, "%s", db_error(db));
	}
	free(ids);
	return status;
}

static void sql_free(struct maildrop *md)
{
	if (md == NULL)
		return;
	free(md->msgs);
	free(md);
}

static int sql_deliver(struct db *db, const struct config *cfg, const struct user *u,
		       const char *msg, size_t len, char *err, size_t errlen)
{
	size_t header_len = message_header_length(msg, len);
	int status = db->ops->msg_store(db, u->uid, u->quota, msg, header_len, msg + header_len,
					len - header_len, pop3_wire_size(msg, len));
	if (status != DB_OK)
		snprintf(err, errlen, "%s", db_error(db));
	return status;
}

static int sql_usage(struct db *db, const struct config *cfg, const struct user *u,
		     uint64_t *bytes_r, char *err, size_t errlen)
{
	int status = db->ops->msg_usage(db, u->uid, bytes_r);
	if (status != DB_OK)
		snprintf(err, errlen, "%s", db_error(db));
	return status;
}

const struct maildrop_ops maildrop_sql_ops = {
	.name = "sql",
	.open = sql_open,
	.reader_new = sql_reader_new,
	.read = sql_read,
	.reader_free = sql_reader_free,
	.commit = sql_commit,
	.free = sql_free,
	.deliver = sql_deliver,
	.usage = sql_usage,
};
