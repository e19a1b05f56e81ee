/* tpops-import courier: a Courier Maildir for an existing tpops user, each
 * message with the UIDL Courier's pop3d showed.
 *
 * Courier's pop3d (pop3dserver.c, Courier-IMAP 4 and later, and 0.43 on)
 * moves new/ to cur/ at login and lists cur/ sorted by the number that
 * starts a file name, then the name up to ':'. It keeps its UIDLs in
 * courierpop3dsizelist:
 *     /3 NEXTUID UIDVALIDITY              (or /2)
 *     FILENAME SIZE UID:UIDVALIDITY[:UTF8]
 * and shows "UID<uid>-<uidvalidity>", or "UID<uid>" when the validity is
 * 0. A message without a UID there (uid 0, or no sizelist at all: Courier
 * before 0.43) shows its base name, with octets outside 0x21-0x7E and
 * ' " + written +XX. courierimapuiddb holds Courier's IMAP UIDs, which its
 * POP3 server never showed: it is not read. Files Courier has not listed
 * yet (in new/, or in cur/ but not in the sizelist) were never seen by a
 * client: they come over with tpops's own UIDL, after the others. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include "buf.h"
#include "import.h"
#include "imported_uidls.h"
#include "maildir.h"
#include "xalloc.h"

struct cfile {
	char *file; /* "cur/NAME" */
	char *base;
	bool in_new;
	unsigned long uid, uidv; /* from the sizelist; uid 0: none */
	uint64_t size;
	bool listed;
};

struct cfiles {
	struct cfile *f;
	size_t count, cap;
};

static void collect(const char *subdir, const char *name, void *ctx)
{
	struct cfiles *c = ctx;
	if (c->count == c->cap) {
		c->cap = c->cap ? 2 * c->cap : 64;
		c->f = xrealloc(c->f, c->cap * sizeof *c->f);
	}
	struct buf path = BUF_INIT;
	buf_printf(&path, "%s/%s", subdir, name);
	c->f[c->count++] = (struct cfile){
		.file = buf_steal(&path),
		.base = xstrndup(name, maildir_base_length(name)),
		.in_new = strcmp(subdir, "new") == 0,
	};
}

/* Courier's cmpmsgs: the number at the start, then the octets up to ':'. */
static int courier_order(const void *pa, const void *pb)
{
	const struct cfile *a = pa, *b = pb;
	if (a->in_new != b->in_new)
		return a->in_new ? 1 : -1;
	long na = atol(a->base), nb = atol(b->base);
	if (na != nb)
		return na < nb ? -1 : 1;
	return strcmp(a->base, b->base);
}

static int by_base(const void *pa, const void *pb)
{
	const struct cfile *a = pa, *b = pb;
	int r = strcmp(a->base, b->base);
	return r != 0 ? r : (a->in_new > b->in_new) - (a->in_new < b->in_new);
}

/* c sorted by_base: the file in cur/ with this base name. */
static struct cfile *find(struct cfiles *c, const char *base)
{
	struct cfile key = {.base = (char *)base, .in_new = false};
	return bsearch(&key, c->f, c->count, sizeof *c->f, by_base);
}

/* Reads courierpop3dsizelist into the files it names; false when absent. */
static int read_sizelist(int fd, struct cfiles *c, bool *present, char *err, size_t errlen)
{
	struct import_msg m = {.file = "courierpop3dsizelist"};
	struct import_reader r = {.maildir_fd = fd};
	char *text = NULL;
	size_t len = 0;
	char rerr[256];
	*present = false;
	if (import_read_file(&r, &m, &text, &len, rerr, sizeof rerr) != 0) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "%s", rerr);
		return -1;
	}
	int version = 0;
	unsigned long next, uidv;
	if (len < 2 || text[0] != '/' ||
	    sscanf(text + 1, "%d %lu %lu", &version, &next, &uidv) < 2 ||
	    (version != 2 && version != 3)) {
		/* Courier ignores it then and starts afresh: so does nothing
		 * a client saw survive; say so */
		snprintf(err, errlen, "courierpop3dsizelist: version %d is not one Courier reads",
			 version);
		free(text);
		return -1;
	}
	*present = true;
	char *save = NULL;
	strtok_r(text, "\n", &save); /* the header */
	for (char *line = strtok_r(NULL, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		/* FILENAME SIZE UID:UIDV[:UTF8]; the name may hold spaces */
		char *p = strrchr(line, ' ');
		if (p == NULL)
			continue;
		*p = '\0';
		char *q = strrchr(line, ' ');
		if (q == NULL)
			continue;
		*q = '\0';
		unsigned long long size;
		unsigned long uid, v;
		if (sscanf(q + 1, "%llu", &size) != 1 || sscanf(p + 1, "%lu:%lu", &uid, &v) != 2)
			continue;
		char *base = xstrndup(line, maildir_base_length(line));
		struct cfile *f = find(c, base);
		free(base);
		if (f == NULL)
			continue; /* deleted since */
		f->listed = true;
		f->uid = uid;
		f->uidv = v;
		f->size = size;
	}
	free(text);
	return 0;
}

/* The UIDL Courier shows for a message without a UID: the base name with
 * some octets as +XX. Longer than 70 octets: not a valid UIDL. */
static bool filename_uidl(const char *base, char out[POP3_MAX_UIDL + 1])
{
	struct buf b = BUF_INIT;
	for (const unsigned char *p = (const unsigned char *)base; *p; p++) {
		if (*p < 0x21 || *p > 0x7e || *p == '\'' || *p == '"' || *p == '+')
			buf_printf(&b, "+%02X", *p);
		else
			buf_append_char(&b, (char)*p);
	}
	bool ok = b.len >= 1 && b.len <= POP3_MAX_UIDL;
	if (ok)
		memcpy(out, b.data, b.len + 1);
	buf_free(&b);
	return ok;
}

int import_courier(int argc, char **argv, struct db *db, const struct config *cfg,
		   struct import_options *opt, struct import_stats *st)
{
	if (argc != 2) {
		fprintf(stderr, "usage: tpops-import courier [--copy|--into-sql] [--dry-run] LOGIN "
				"MAILDIR\n");
		return EX_USAGE;
	}
	const char *login = argv[0], *path = argv[1];
	char err[1024];
	int fd = import_open_source(path, err, sizeof err);
	if (fd < 0) {
		fprintf(stderr, "tpops-import: %s\n", err);
		return EX_NOINPUT;
	}
	struct cfiles c = {0};
	struct import_list l = {0};
	struct user u = {0};
	bool present = false;
	int rc = EX_OK;
	int listed = import_list_maildir(fd, collect, &c, err, sizeof err);
	if (listed == 0 && c.count > 1)
		qsort(c.f, c.count, sizeof *c.f, by_base);
	if (listed != 0 || read_sizelist(fd, &c, &present, err, sizeof err) != 0) {
		fprintf(stderr, "tpops-import: %s: Maildir %s: %s\n", login, path, err);
		rc = EX_DATAERR;
		goto out;
	}
	if (c.count > 1)
		qsort(c.f, c.count, sizeof *c.f, courier_order);
	/* listed first, in Courier's order; then what it never listed */
	for (int pass = 0; pass < 2 && rc == EX_OK; pass++) {
		for (size_t i = 0; i < c.count; i++) {
			struct cfile *f = &c.f[i];
			bool seen = !f->in_new && (f->listed || !present);
			if (seen != (pass == 0))
				continue;
			struct import_msg *m = import_list_add(&l);
			m->file = xstrdup(f->file);
			m->base = xstrdup(f->base);
			struct stat sb;
			m->size = f->size			      ? f->size
				  : fstatat(fd, f->file, &sb, 0) == 0 ? (uint64_t)sb.st_size
								      : 0;
			if (!seen) {
				maildir_uidl(f->base, strlen(f->base), m->uidl);
				l.unseen++;
			} else if (f->uid != 0) {
				if (f->uidv != 0)
					snprintf(m->uidl, sizeof m->uidl, "UID%lu-%lu", f->uid,
						 f->uidv);
				else
					snprintf(m->uidl, sizeof m->uidl, "UID%lu", f->uid);
			} else if (!filename_uidl(f->base, m->uidl)) {
				fprintf(stderr,
					"tpops-import: %s: %s: Courier's UIDL of this name is "
					"longer "
					"than POP3 allows; nothing imported\n",
					login, f->file);
				rc = EX_DATAERR;
				break;
			}
		}
	}
	if (rc != EX_OK)
		goto out;
	if (import_user(db, cfg, opt, login, NULL, NULL, NULL, &u) != 0) {
		st->users_failed++;
		rc = EX_NOUSER;
		goto out;
	}
	uint64_t bytes = 0;
	for (size_t i = 0; i < l.count; i++)
		bytes += l.msgs[i].size;
	st->msgs_total += l.count;
	st->bytes_total += bytes;
	import_progress_user(login, l.count, bytes);
	if (!present)
		printf("tpops-import: %s: no courierpop3dsizelist: the UIDLs are the file "
		       "names "
		       "(Courier before 0.43)\n",
		       login);
	if (l.unseen > 0)
		printf("tpops-import: %s: %zu messages Courier had not listed yet get "
		       "tpops's own "
		       "UIDLs\n",
		       login, l.unseen);
	struct import_reader reader = {.read = import_read_file, .maildir_fd = fd};
	struct import_stats before = *st;
	if (import_messages(db, cfg, opt, &u, fd, &l, &reader, st) != 0) {
		st->users_failed++;
		rc = EX_TEMPFAIL;
	} else {
		st->users++;
	}
	if (opt->dry_run)
		import_dry_run_user(&u, &before, st);
out:
	for (size_t i = 0; i < c.count; i++) {
		free(c.f[i].file);
		free(c.f[i].base);
	}
	free(c.f);
	import_list_free(&l);
	user_clear(&u);
	close(fd);
	return rc;
}
