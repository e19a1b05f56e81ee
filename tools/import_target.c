/* tpops-import: writing into tpops (see import.h).
 *
 * SQL store: one transaction per message stores it with its old UIDL in
 * msg.uidl and a msg_imported row; a message whose UIDL the user has, or
 * had and deleted, is skipped, so a second run imports only what is new.
 *
 * Maildir: the old UIDLs go into the Maildir's tpops-uidls (see
 * imported_uidls.h). Adopting (the user's Maildir is the source itself):
 * the whole file is written at once and renamed into place. Copying: per
 * message, "? BASE UIDL" is appended, the file is written to tmp/, synced
 * and renamed into new/ or cur/ (never over another), and "+ BASE UIDL"
 * appended. After an interruption a "?" line whose file is there is
 * completed by the next run, one whose file is not is imported again; a
 * "+" line stays done even when the user has deleted that message since. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "import.h"
#include "imported_uidls.h"
#include "maildir.h"
#include "maildrop.h"
#include "pop3_out.h"
#include "xalloc.h"

struct import_msg *import_list_add(struct import_list *l)
{
	if (l->count == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 64;
		l->msgs = xrealloc(l->msgs, l->cap * sizeof *l->msgs);
	}
	struct import_msg *m = &l->msgs[l->count++];
	memset(m, 0, sizeof *m);
	return m;
}

void import_list_free(struct import_list *l)
{
	for (size_t i = 0; i < l->count; i++) {
		free(l->msgs[i].file);
		free(l->msgs[i].base);
	}
	free(l->msgs);
	memset(l, 0, sizeof *l);
}

/* ---- a set of strings (UIDLs, base names) ---- */

struct strset {
	char **keys;
	void **values;
	size_t size, count;
};

static size_t str_hash(const char *s)
{
	size_t h = 14695981039346656037u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211u;
	return h;
}

static size_t strset_slot(const struct strset *s, const char *key)
{
	size_t i = str_hash(key) & (s->size - 1);
	while (s->keys[i] != NULL && strcmp(s->keys[i], key) != 0)
		i = (i + 1) & (s->size - 1);
	return i;
}

static void strset_put(struct strset *s, const char *key, void *value)
{
	if (2 * (s->count + 1) > s->size) {
		struct strset old = *s;
		s->size = s->size ? 2 * s->size : 64;
		s->keys = xcalloc(s->size, sizeof *s->keys);
		s->values = xcalloc(s->size, sizeof *s->values);
		s->count = 0;
		for (size_t i = 0; i < old.size; i++)
			if (old.keys[i] != NULL) {
				size_t j = strset_slot(s, old.keys[i]);
				s->keys[j] = old.keys[i];
				s->values[j] = old.values[i];
				s->count++;
			}
		free(old.keys);
		free(old.values);
	}
	size_t i = strset_slot(s, key);
	if (s->keys[i] == NULL) {
		s->keys[i] = xstrdup(key);
		s->count++;
	}
	s->values[i] = value;
}

static bool strset_get(const struct strset *s, const char *key, void **value_r)
{
	if (s->count == 0)
		return false;
	size_t i = strset_slot(s, key);
	if (s->keys[i] == NULL)
		return false;
	if (value_r != NULL)
		*value_r = s->values[i];
	return true;
}

static void strset_free(struct strset *s)
{
	for (size_t i = 0; i < s->size; i++)
		free(s->keys[i]);
	free(s->keys);
	free(s->values);
	memset(s, 0, sizeof *s);
}

/* ---- sources on disk ---- */

int import_open_source(const char *path, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "Maildir %s: %s", path, strerror(errno));
		return -1;
	}
	for (int i = 0; i < 2; i++) {
		struct stat st;
		const char *sub = i == 0 ? "cur" : "new";
		if (fstatat(fd, sub, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode)) {
			snprintf(err, errlen, "%s is not a Maildir: %s/: %s", path, sub,
				 errno == 0 ? "not a directory" : strerror(errno));
			close(fd);
			return -1;
		}
	}
	return fd;
}

int import_list_maildir(int fd, void (*each)(const char *subdir, const char *name, void *ctx),
			void *ctx, char *err, size_t errlen)
{
	static const char *const subdirs[2] = {"new", "cur"};
	for (int i = 0; i < 2; i++) {
		int d = openat(fd, subdirs[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		DIR *dir = d >= 0 ? fdopendir(d) : NULL;
		if (dir == NULL) {
			snprintf(err, errlen, "%s/: %s", subdirs[i], strerror(errno));
			if (d >= 0)
				close(d);
			return -1;
		}
		struct dirent *de;
		errno = 0;
		while ((de = readdir(dir)) != NULL) {
			if (de->d_name[0] == '.')
				continue;
			if (de->d_type != DT_REG && de->d_type != DT_UNKNOWN)
				continue;
			each(subdirs[i], de->d_name, ctx);
		}
		int e = errno;
		closedir(dir);
		if (e != 0) {
			snprintf(err, errlen, "reading %s/: %s", subdirs[i], strerror(e));
			return -1;
		}
	}
	return 0;
}

int import_read_file(struct import_reader *r, const struct import_msg *m, char **data_r,
		     size_t *len_r, char *err, size_t errlen)
{
	int fd = openat(r->maildir_fd, m->file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0) {
		snprintf(err, errlen, "%s: %s", m->file, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", m->file);
		close(fd);
		errno = EINVAL;
		return -1;
	}
	struct buf b = BUF_INIT;
	buf_reserve(&b, (size_t)st.st_size + 1);
	char chunk[65536];
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof chunk);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(err, errlen, "reading %s: %s", m->file, strerror(errno));
			buf_free(&b);
			close(fd);
			return -1;
		}
		if (n == 0)
			break;
		buf_append(&b, chunk, (size_t)n);
	}
	close(fd);
	*len_r = b.len;
	*data_r = b.data ? b.data : xstrdup("");
	return 0;
}

char *import_maildir_for_config(const struct config *cfg, const char *path)
{
	const char *root = cfg->maildir_root;
	if (root != NULL && path[0] == '/') {
		size_t n = strlen(root);
		while (n > 1 && root[n - 1] == '/')
			n--;
		if (strncmp(path, root, n) == 0 && path[n] == '/' && path[n + 1] != '\0')
			return xstrdup(path + n + 1);
	}
	return xstrdup(path);
}

/* ---- users ---- */

int import_user(struct db *db, const struct config *cfg, const struct import_options *opt,
		const char *login, const char *create_passwd, const char *mail, const char *maildir,
		struct user *u)
{
	int status = db->ops->user_by_login(db, login, u);
	if (status == DB_OK)
		return 0;
	if (status != DB_NOT_FOUND) {
		fprintf(stderr, "tpops-import: %s: %s\n", login, db_error(db));
		return -1;
	}
	if (create_passwd == NULL) {
		fprintf(stderr,
			"tpops-import: %s: no such tpops user (add it with tpops-useradd "
			"first)\n",
			login);
		return -1;
	}
	struct user nu = {
		.login = (char *)login,
		.passwd = (char *)create_passwd,
		.mail = (char *)mail,
		.maildir = (char *)(maildir ? maildir : ""),
	};
	if (opt->dry_run) {
		*u = (struct user){.uid = -1,
				   .login = xstrdup(login),
				   .passwd = xstrdup(create_passwd),
				   .mail = xstrdup(mail),
				   .maildir = xstrdup(nu.maildir)};
		return 0;
	}
	status = db->ops->user_add(db, &nu);
	if (status == DB_OK)
		status = db->ops->user_by_login(db, login, u);
	if (status != DB_OK) {
		fprintf(stderr, "tpops-import: adding user %s <%s>: %s\n", login, mail,
			status == DB_CONFLICT ? "the address belongs to another user"
					      : db_error(db));
		return -1;
	}
	(void)cfg;
	return 0;
}

/* ---- SQL ---- */

static void have_uidl(const char *uidl, void *ctx)
{
	strset_put(ctx, uidl, NULL);
}

static int import_sql(struct db *db, const struct import_options *opt, const struct user *u,
		      struct import_list *l, struct import_reader *reader, struct import_stats *st)
{
	if (db->ops->msg_import == NULL || db->ops->msg_imported == NULL) {
		fprintf(stderr, "tpops-import: the %s store cannot import messages\n",
			db->ops->name);
		return -1;
	}
	struct strset have = {0};
	if (u->uid >= 0) {
		struct db_msg *rows = NULL;
		size_t count = 0;
		if (db->ops->msg_list(db, u->uid, &rows, &count) != DB_OK) {
			fprintf(stderr, "tpops-import: %s: listing the messages: %s\n", u->login,
				db_error(db));
			return -1;
		}
		for (size_t i = 0; i < count; i++)
			if (rows[i].uidl[0] != '\0')
				strset_put(&have, rows[i].uidl, NULL);
		free(rows);
		/* and those imported before and deleted since: not again */
		if (db->ops->msg_imported(db, u->uid, have_uidl, &have) != DB_OK) {
			fprintf(stderr, "tpops-import: %s: listing the imported UIDLs: %s\n",
				u->login, db_error(db));
			strset_free(&have);
			return -1;
		}
	}
	int rc = 0;
	for (size_t i = 0; i < l->count; i++) {
		struct import_msg *m = &l->msgs[i];
		if (strset_get(&have, m->uidl, NULL)) {
			st->msgs_already++;
			import_progress_step(st, m->size);
			continue;
		}
		if (opt->dry_run) {
			st->msgs_done++;
			st->bytes_done += m->size;
			import_progress_step(st, m->size);
			continue;
		}
		char *data = NULL;
		size_t len = 0;
		char err[512];
		if (reader->read(reader, m, &data, &len, err, sizeof err) != 0) {
			import_progress_end();
			fprintf(stderr, "tpops-import: %s: %s\n", u->login, err);
			st->msgs_failed++;
			rc = -1;
			if (reader->maildir_fd < 0)
				break; /* the connection is gone */
			continue;
		}
		size_t hlen = message_header_length(data, len);
		int status = db->ops->msg_import(db, u->uid, data, hlen, data + hlen, len - hlen,
						 pop3_wire_size(data, len), m->uidl);
		free(data);
		if (status != DB_OK) {
			import_progress_end();
			fprintf(stderr, "tpops-import: %s: storing the message with UIDL %s: %s\n",
				u->login, m->uidl, db_error(db));
			st->msgs_failed++;
			rc = -1;
			break;
		}
		strset_put(&have, m->uidl, NULL);
		st->msgs_done++;
		st->bytes_done += len;
		import_progress_step(st, m->size);
	}
	strset_free(&have);
	return rc;
}

/* ---- Maildir ---- */

/* Writes data durably as subdir/name of an open Maildir: tmp/ first,
 * synced, renamed (never over another file), the directory synced. This is
 * maildir_deliver with the name chosen beforehand, which the "?" line
 * needs. */
static int put_file(int maildir_fd, const char *subdir, const char *name, const char *data,
		    size_t len, char *err, size_t errlen)
{
	char tmp[600], dst[600];
	snprintf(tmp, sizeof tmp, "tmp/%s", name);
	snprintf(dst, sizeof dst, "%s/%s", subdir, name);
	int fd = openat(maildir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
			0600);
	if (fd < 0) {
		snprintf(err, errlen, "creating %.300s: %s", tmp, strerror(errno));
		return -1;
	}
	int e = 0;
	const char *failed = maildir_write_sync_close(fd, data, len, &e);
	if (failed == NULL && renameat2(maildir_fd, tmp, maildir_fd, dst, RENAME_NOREPLACE) != 0) {
		failed = "moving into place";
		e = errno;
	}
	if (failed != NULL) {
		snprintf(err, errlen, "%s %.300s: %s", failed, tmp, strerror(e));
		(void)unlinkat(maildir_fd, tmp, 0);
		return -1;
	}
	int d = openat(maildir_fd, subdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (d < 0 || fsync(d) != 0) {
		snprintf(err, errlen, "fsync of %s/: %s", subdir, strerror(errno));
		if (d >= 0)
			close(d);
		return -1;
	}
	close(d);
	return 0;
}

static void collect_base(const char *subdir, const char *name, void *ctx)
{
	char *base = xstrndup(name, maildir_base_length(name));
	strset_put(ctx, base, NULL);
	free(base);
}

/* Adopting: the messages stay where they are; only tpops-uidls is written,
 * whole, and renamed into place. */
static int adopt(int fd, const struct import_options *opt, const struct user *u,
		 struct import_list *l, const struct imported_uidls *have, struct import_stats *st)
{
	struct buf text = BUF_INIT;
	buf_append_str(&text, IMPORTED_UIDLS_MAGIC);
	size_t added = 0;
	/* the lines that are there keep their order; new ones follow */
	for (size_t i = 0; i < have->count; i++) {
		const struct imported_uidl *e = &have->entries[i];
		buf_printf(&text, "%c %.*s %.*s\n", e->done ? '+' : '?', (int)e->base_len, e->base,
			   (int)e->uidl_len, e->uidl);
	}
	for (size_t i = 0; i < l->count; i++) {
		struct import_msg *m = &l->msgs[i];
		const struct imported_uidl *e = imported_uidls_find(have, m->base, strlen(m->base));
		if (e != NULL && e->uidl_len == strlen(m->uidl) &&
		    memcmp(e->uidl, m->uidl, e->uidl_len) == 0) {
			st->msgs_already++;
			import_progress_step(st, m->size);
			continue;
		}
		if (e != NULL) {
			import_progress_end();
			fprintf(stderr,
				"tpops-import: %s: %s had UIDL %.*s from an earlier import, now "
				"%s: "
				"kept the earlier one\n",
				u->login, m->base, (int)e->uidl_len, e->uidl, m->uidl);
			st->msgs_already++;
			continue;
		}
		buf_printf(&text, "+ %s %s\n", m->base, m->uidl);
		added++;
		st->msgs_done++;
		st->bytes_done += m->size;
		import_progress_step(st, m->size);
	}
	int rc = 0;
	if (added > 0 && !opt->dry_run) {
		char tmp[64];
		snprintf(tmp, sizeof tmp, "tmp/.tpops-uidls.%ld", (long)getpid());
		int t = openat(fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
			       0600);
		if (t < 0 || maildir_write_all(t, text.data, text.len) != 0 || fsync(t) != 0 ||
		    renameat(fd, tmp, fd, IMPORTED_UIDLS_FILE) != 0 || fsync(fd) != 0) {
			import_progress_end();
			fprintf(stderr, "tpops-import: %s: writing %s: %s\n", u->login,
				IMPORTED_UIDLS_FILE, strerror(errno));
			(void)unlinkat(fd, tmp, 0);
			rc = -1;
		}
		if (t >= 0)
			close(t);
	}
	buf_free(&text);
	return rc;
}

static int copy_into(int fd, const struct import_options *opt, const struct user *u,
		     struct import_list *l, struct import_reader *reader,
		     const struct imported_uidls *have, struct import_stats *st)
{
	/* what the target has: base names on disk, and the UIDLs of tpops-uidls */
	struct strset on_disk = {0}, by_uidl = {0};
	char err[512];
	if (import_list_maildir(fd, collect_base, &on_disk, err, sizeof err) != 0) {
		fprintf(stderr, "tpops-import: %s: Maildir %s: %s\n", u->login, u->maildir, err);
		return -1;
	}
	for (size_t i = 0; i < have->count; i++) {
		char *uidl = xstrndup(have->entries[i].uidl, have->entries[i].uidl_len);
		strset_put(&by_uidl, uidl, (void *)&have->entries[i]);
		free(uidl);
	}
	int rc = 0;
	for (size_t i = 0; i < l->count && rc == 0; i++) {
		struct import_msg *m = &l->msgs[i];
		void *found = NULL;
		if (strset_get(&by_uidl, m->uidl, &found)) {
			const struct imported_uidl *e = found;
			char *base = xstrndup(e->base, e->base_len);
			bool there = strset_get(&on_disk, base, NULL);
			if (e->done || there) {
				/* a "?" whose file made it: complete it */
				if (!e->done && !opt->dry_run &&
				    imported_uidls_append(fd, '+', base, m->uidl) != 0) {
					fprintf(stderr, "tpops-import: %s: appending to %s: %s\n",
						u->login, IMPORTED_UIDLS_FILE, strerror(errno));
					rc = -1;
				}
				free(base);
				st->msgs_already++;
				import_progress_step(st, m->size);
				continue;
			}
			free(base);
		}
		if (opt->dry_run) {
			st->msgs_done++;
			st->bytes_done += m->size;
			import_progress_step(st, m->size);
			continue;
		}
		char *data = NULL;
		size_t len = 0;
		if (reader->read(reader, m, &data, &len, err, sizeof err) != 0) {
			import_progress_end();
			fprintf(stderr, "tpops-import: %s: %s\n", u->login, err);
			st->msgs_failed++;
			rc = -1;
			break;
		}
		/* a Maildir source's file keeps its name (and flags); mail from
		 * a POP3 server gets a new one */
		char name[512];
		const char *subdir = "cur";
		if (m->file != NULL) {
			snprintf(name, sizeof name, "%s", strchr(m->file, '/') + 1);
			if (strncmp(m->file, "new/", 4) == 0)
				subdir = "new";
		} else {
			char unique[256];
			maildir_unique_name(unique, sizeof unique);
			snprintf(name, sizeof name, "%s,S=%zu,W=%llu", unique, len,
				 (unsigned long long)pop3_wire_size(data, len));
			subdir = "new";
		}
		char *base = xstrndup(name, maildir_base_length(name));
		if (strset_get(&on_disk, base, NULL)) {
			import_progress_end();
			fprintf(stderr,
				"tpops-import: %s: %s is already in the Maildir without an "
				"imported "
				"UIDL; not copied again\n",
				u->login, base);
			st->msgs_failed++;
			free(base);
			free(data);
			continue;
		}
		if (imported_uidls_append(fd, '?', base, m->uidl) != 0 ||
		    put_file(fd, subdir, name, data, len, err, sizeof err) != 0 ||
		    imported_uidls_append(fd, '+', base, m->uidl) != 0) {
			import_progress_end();
			fprintf(stderr, "tpops-import: %s: Maildir %s: %s\n", u->login, u->maildir,
				err[0] ? err : strerror(errno));
			st->msgs_failed++;
			rc = -1;
		} else {
			strset_put(&on_disk, base, NULL);
			st->msgs_done++;
			st->bytes_done += len;
			import_progress_step(st, m->size);
		}
		err[0] = '\0';
		free(base);
		free(data);
	}
	strset_free(&on_disk);
	strset_free(&by_uidl);
	return rc;
}

int import_messages(struct db *db, const struct config *cfg, const struct import_options *opt,
		    const struct user *u, int src_fd, struct import_list *l,
		    struct import_reader *reader, struct import_stats *st)
{
	if (opt->into_sql)
		return import_sql(db, opt, u, l, reader, st);

	signal(SIGXFSZ, SIG_IGN); /* EFBIG, reported, rather than death */
	int fd = -1;
	char err[512];
	/* a dry run creates nothing */
	int status = maildir_open_dir(cfg->maildir_root, u->maildir, !opt->dry_run, &fd, err,
				      sizeof err);
	if (status != DB_OK) {
		if (opt->dry_run && src_fd >= 0) { /* it would be made */
			for (size_t i = 0; i < l->count; i++) {
				st->msgs_done++;
				st->bytes_done += l->msgs[i].size;
				import_progress_step(st, l->msgs[i].size);
			}
			return 0;
		}
		fprintf(stderr, "tpops-import: %s: %s\n", u->login, err);
		return -1;
	}
	int subdirs[3];
	if (!opt->dry_run) {
		/* a Maildir made just now has no tmp/ new/ cur/ yet */
		if (maildir_open_subdirs(fd, true, subdirs, err, sizeof err) != DB_OK) {
			fprintf(stderr, "tpops-import: %s: Maildir %s: %s\n", u->login, u->maildir,
				err);
			close(fd);
			return -1;
		}
		for (int i = 0; i < 3; i++)
			close(subdirs[i]);
	}
	struct imported_uidls have;
	if (imported_uidls_load(fd, &have, err, sizeof err) != DB_OK) {
		fprintf(stderr, "tpops-import: %s: Maildir %s: %s\n", u->login, u->maildir, err);
		close(fd);
		return -1;
	}
	if (have.bad_line == 1) {
		fprintf(stderr, "tpops-import: %s: Maildir %s: %s is not a file tpops wrote\n",
			u->login, u->maildir, IMPORTED_UIDLS_FILE);
		imported_uidls_free(&have);
		close(fd);
		return -1;
	}
	if (have.bad_line != 0)
		fprintf(stderr,
			"tpops-import: %s: Maildir %s: %s is damaged at line %zu: the "
			"lines from "
			"there on are dropped\n",
			u->login, u->maildir, IMPORTED_UIDLS_FILE, have.bad_line);
	int rc;
	if (!opt->dry_run && imported_uidls_truncate(fd, &have) != 0) {
		fprintf(stderr, "tpops-import: %s: Maildir %s: repairing %s: %s\n", u->login,
			u->maildir, IMPORTED_UIDLS_FILE, strerror(errno));
		rc = -1;
	} else {
		struct stat a, b;
		bool same = src_fd >= 0 && fstat(src_fd, &a) == 0 && fstat(fd, &b) == 0 &&
			    a.st_dev == b.st_dev && a.st_ino == b.st_ino;
		if (same)
			rc = adopt(fd, opt, u, l, &have, st);
		else if (src_fd >= 0 && !opt->copy) {
			fprintf(stderr,
				"tpops-import: %s: the tpops user's Maildir is %s, not the one "
				"imported from: use --copy to copy the messages into it\n",
				u->login, u->maildir);
			rc = -1;
		} else
			rc = copy_into(fd, opt, u, l, reader, &have, st);
	}
	imported_uidls_free(&have);
	close(fd);
	return rc;
}
