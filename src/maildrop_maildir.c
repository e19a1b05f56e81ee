/* The maildrop in a Maildir (Mailbox: Maildir), user.maildir naming it.
 *
 * Login lists new/ and cur/ once (numbers stay fixed for the session) in
 * arrival order: the seconds that start a Maildir name, then the rest of
 * the base name with digit runs compared as numbers (M<usec>, Q<counter>).
 * Sizes come from the name's W= field, else from the size cache, else by
 * reading the file once and caching the result, so a second login reads no
 * message file. The listing is kept in the listing cache (maildir.h) with
 * the state of new/ and cur/; a login that finds both unchanged builds the
 * list from it without reading the directories. Messages are read by base
 * name: a file another client moved
 * from new/ to cur/ or flagged meanwhile is found again. At QUIT, deleted
 * messages are unlinked and retrieved ones get the S (seen) flag in cur/. */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "maildir.h"
#include "maildrop.h"
#include "metrics.h"
#include "pop3_out.h"
#include "xalloc.h"

/* Read size while measuring a message without a size field. */
#define MEASURE_CHUNK (64 * 1024)

struct maildir_drop {
	struct maildrop md;  /* first: the session sees only this */
	/* The Maildir, opened beneath MaildirRoot when needed (listing, QUIT;
	 * a RETR's reader opens its own) and closed again, so that an idle
	 * session holds no descriptor but its socket; -1 when closed. */
	int dir_fd;
	char *root;          /* MaildirRoot, or NULL */
	int lease;           /* LockLease, to check the lock at commit */
	char *path;          /* user.maildir, for logs */
	char *index_buf;     /* the listing cache the names point into, or NULL */
	size_t index_len;
};

/* Whether a message's name was malloc'd (not a part of the listing cache). */
static bool name_owned(const struct maildir_drop *dm, const char *name)
{
	uintptr_t p = (uintptr_t)name, b = (uintptr_t)dm->index_buf;
	return dm->index_buf == NULL || p < b || p >= b + dm->index_len;
}

static void set_name(struct maildir_drop *dm, struct maildrop_msg *m, char *name)
{
	if (name_owned(dm, m->name))
		free(m->name);
	m->name = name;
}

/* msgs[i].name is "new/FILE" or "cur/FILE", relative to dir_fd. */
#define SUBDIR_LEN 4

/* ---- listing ---- */

struct item {
	char *name; /* "new/FILE" */
	size_t base_len;
	uint64_t seconds;
};

struct listing {
	struct item *items;
	size_t count, cap;
	const char *subdir;
};

static void collect(const char *file, int dir_fd, void *ctx)
{
	struct listing *l = ctx;
	if (l->count == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 256;
		l->items = xrealloc(l->items, l->cap * sizeof *l->items);
	}
	size_t n = strlen(file);
	struct item *it = &l->items[l->count++];
	it->name = xmalloc(SUBDIR_LEN + n + 1);
	memcpy(it->name, l->subdir, SUBDIR_LEN);
	memcpy(it->name + SUBDIR_LEN, file, n + 1);
	it->base_len = maildir_base_length(file);
	it->seconds = 0;
	for (const char *p = file; *p >= '0' && *p <= '9' && it->seconds < UINT64_MAX / 100; p++)
		it->seconds = it->seconds * 10 + (uint64_t)(*p - '0');
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Byte order, except that runs of digits compare as numbers, so that
 * ".M99P" comes before ".M100P". */
static int natural_compare(const char *a, size_t alen, const char *b, size_t blen)
{
	size_t i = 0, j = 0;
	while (i < alen && j < blen) {
		if (is_digit(a[i]) && is_digit(b[j])) {
			while (i < alen && a[i] == '0')
				i++;
			while (j < blen && b[j] == '0')
				j++;
			size_t ei = i, ej = j;
			while (ei < alen && is_digit(a[ei]))
				ei++;
			while (ej < blen && is_digit(b[ej]))
				ej++;
			if (ei - i != ej - j)
				return ei - i < ej - j ? -1 : 1;
			int c = memcmp(a + i, b + j, ei - i);
			if (c != 0)
				return c;
			i = ei;
			j = ej;
			continue;
		}
		if (a[i] != b[j])
			return (unsigned char)a[i] < (unsigned char)b[j] ? -1 : 1;
		i++;
		j++;
	}
	return (alen - i > blen - j) - (alen - i < blen - j);
}

static int compare_bytes(const char *a, size_t alen, const char *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);
	return c != 0 ? c : (alen > blen) - (alen < blen);
}

static int compare_items(const void *pa, const void *pb)
{
	const struct item *a = pa, *b = pb;
	if (a->seconds != b->seconds)
		return a->seconds < b->seconds ? -1 : 1;
	const char *ab = a->name + SUBDIR_LEN, *bb = b->name + SUBDIR_LEN;
	int c = natural_compare(ab, a->base_len, bb, b->base_len);
	if (c == 0)
		c = compare_bytes(ab, a->base_len, bb, b->base_len);
	return c != 0 ? c : strcmp(a->name, b->name);
}

/* With stamps, the state of each directory before it is read, and the
 * time just before the first is looked at, go to stamps[0..1] and *listed
 * (*stamped false when a stat failed). */
static int list_subdirs(int dir_fd, const char *path, struct listing *l,
			struct maildir_dir_stamp *stamps, struct timespec *listed, bool *stamped,
			char *err, size_t errlen)
{
	static const char *const subdirs[2] = {"new/", "cur/"};
	if (stamps != NULL) {
		clock_gettime(CLOCK_REALTIME, listed);
		*stamped = true;
	}
	for (int i = 0; i < 2; i++) {
		char dir[4] = {subdirs[i][0], subdirs[i][1], subdirs[i][2], '\0'};
		int fd = maildir_openat(dir_fd, dir, O_RDONLY | O_DIRECTORY);
		if (fd < 0) {
			int e = errno;
			snprintf(err, errlen, "Maildir %s: %s/: %s", path, dir,
				 e == ELOOP || e == EXDEV ? "is a symlink" : strerror(e));
			return e == ENOENT || e == ENOTDIR || e == ELOOP || e == EXDEV || e == EACCES
				       ? DB_PERMFAIL
				       : DB_TEMPFAIL;
		}
		if (stamps != NULL && !maildir_dir_stamp(fd, &stamps[i]))
			*stamped = false;
		l->subdir = subdirs[i];
		char lerr[256];
		int status = maildir_list(fd, dir, collect, l, lerr, sizeof lerr);
		close(fd);
		if (status != DB_OK) {
			snprintf(err, errlen, "Maildir %s: %s", path, lerr);
			return status;
		}
	}
	return DB_OK;
}

/* The wire and stored size of a file, read whole; -1 with errno. */
static int measure(int dir_fd, const char *name, char *chunk, uint64_t *wire_r, uint64_t *raw_r)
{
	bool irregular;
	int fd = maildir_open_message(dir_fd, name, false, &irregular);
	if (fd < 0)
		return -1; /* EINVAL: not a regular file */
	struct pop3_out f;
	pop3_out_init(&f, false, -1);
	uint64_t wire = 0, raw = 0;
	for (;;) {
		ssize_t n = read(fd, chunk, MEASURE_CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			close(fd);
			errno = e;
			return -1;
		}
		if (n == 0)
			break;
		wire += pop3_out_count(&f, chunk, (size_t)n);
		raw += (uint64_t)n;
	}
	close(fd);
	*wire_r = wire + pop3_out_count_finish(&f);
	*raw_r = raw;
	return 0;
}

static struct maildir_drop *new_drop(const struct config *cfg, const struct user *u, int dir_fd,
				     size_t count)
{
	struct maildir_drop *dm = xcalloc(1, sizeof *dm);
	dm->md.ops = &maildrop_maildir_ops;
	dm->md.uid = u->uid;
	dm->md.msgs = xcalloc(count ? count : 1, sizeof *dm->md.msgs);
	dm->dir_fd = dir_fd;
	dm->root = cfg->maildir_root != NULL ? xstrdup(cfg->maildir_root) : NULL;
	dm->lease = cfg->lock_lease;
	dm->path = xstrdup(u->maildir);
	return dm;
}

/* Opens the Maildir again (checked beneath MaildirRoot as at login). */
static int drop_dir(struct maildir_drop *dm, char *err, size_t errlen)
{
	if (dm->dir_fd >= 0)
		return DB_OK;
	return maildir_open_dir(dm->root, dm->path, false, &dm->dir_fd, err, errlen);
}

static void drop_dir_close(struct maildir_drop *dm)
{
	if (dm->dir_fd >= 0)
		close(dm->dir_fd);
	dm->dir_fd = -1;
}

/* The list from the listing cache when new/ and cur/ are as it recorded
 * them; NULL otherwise. */
static struct maildir_drop *open_from_index(const struct config *cfg, const struct user *u,
					    int dir_fd)
{
	struct maildir_dir_stamp stamps[2];
	struct maildir_index idx;
	if (!maildir_dir_stamps(dir_fd, stamps) || !maildir_index_load(dir_fd, stamps, &idx))
		return NULL;
	struct maildir_drop *dm = new_drop(cfg, u, dir_fd, idx.count);
	for (size_t i = 0; i < idx.count; i++) {
		const struct maildir_index_entry *e = &idx.entries[i];
		struct maildrop_msg *m = &dm->md.msgs[i];
		m->size = e->size;
		m->raw_size = e->raw_size;
		m->name = (char *)idx.names + e->name_off;
		maildir_uidl(m->name + SUBDIR_LEN, e->base_len, m->uidl);
	}
	dm->md.count = idx.count;
	dm->index_buf = idx.buf; /* the names point into it */
	dm->index_len = idx.len;
	log_debug("Maildir %s: %zu messages, from the listing cache (new/ and cur/ unchanged); "
		  "sizes from names %zu, from the cache %zu, measured 0; 0 skipped",
		  u->maildir, idx.count, idx.from_name, idx.count - idx.from_name);
	return dm;
}

/* How the sizes of a listing were found (for the log, and whether the
 * caches may be written). */
struct sizing {
	bool *cached; /* per served message: its size belongs in the size cache */
	struct maildir_size_cache cache;
	bool cache_loaded;
	size_t from_name, from_cache, measured, dropped, unreadable;
};

/* One listed file's sizes: from W=, else the size cache, else measured.
 * False when the file is not served (gone, or unreadable: logged). */
static bool size_one(int dir_fd, const char *path, struct item *it,
		     struct maildrop_msg *m, struct sizing *sz, char **chunk)
{
	const char *base = it->name + SUBDIR_LEN;
	uint64_t wire, raw;
	if (maildir_size_field(base, it->base_len, 'W', &wire)) {
		m->size = wire;
		m->raw_size = maildir_size_field(base, it->base_len, 'S', &raw) ? raw : wire;
		sz->from_name++;
		return true;
	}
	if (!sz->cache_loaded) {
		maildir_size_cache_load(dir_fd, &sz->cache);
		sz->cache_loaded = true;
	}
	struct maildir_size_entry *e = maildir_size_cache_find(&sz->cache, base, it->base_len);
	if (e != NULL) {
		m->size = e->wire_size;
		m->raw_size = e->raw_size;
		e->used = true;
		sz->from_cache++;
		return true;
	}
	if (*chunk == NULL)
		*chunk = xmalloc(MEASURE_CHUNK);
	if (measure(dir_fd, it->name, *chunk, &m->size, &m->raw_size) != 0) {
		/* gone or renamed since the listing (it shows at the next
		 * login), or unreadable */
		if (errno != ENOENT) {
			sz->unreadable++;
			log_warn("Maildir %s: not serving %s: %s", path, it->name,
				 errno == EINVAL ? "not a regular file" : strerror(errno));
		}
		return false;
	}
	sz->measured++;
	return true;
}

/* Fills dm's messages from the sorted listing, taking over its names;
 * of two files with one unique name only the first is served. */
static void size_listing(struct maildir_drop *dm, int dir_fd, const char *path,
			 struct listing *l, struct sizing *sz)
{
	sz->cached = xcalloc(l->count ? l->count : 1, sizeof *sz->cached);
	char *chunk = NULL;
	size_t n = 0;
	for (size_t i = 0; i < l->count; i++) {
		struct item *it = &l->items[i];
		const char *base = it->name + SUBDIR_LEN;
		if (n > 0) {
			const char *prev = dm->md.msgs[n - 1].name + SUBDIR_LEN;
			if (maildir_base_length(prev) == it->base_len &&
			    memcmp(prev, base, it->base_len) == 0) {
				log_warn("Maildir %s: %s and %s have the same unique name; serving "
					 "only the first",
					 path, dm->md.msgs[n - 1].name, it->name);
				free(it->name);
				sz->dropped++;
				continue;
			}
		}
		struct maildrop_msg *m = &dm->md.msgs[n];
		size_t before = sz->from_name;
		if (!size_one(dir_fd, path, it, m, sz, &chunk)) {
			free(it->name);
			sz->dropped++;
			continue;
		}
		sz->cached[n] = sz->from_name == before;
		m->name = it->name;
		maildir_uidl(base, it->base_len, m->uidl);
		n++;
	}
	free(chunk);
	free(l->items);
	l->items = NULL;
	dm->md.count = n;
}

/* Rewrites the size cache when a size was measured or an entry's file is
 * gone. */
static void save_size_cache(struct maildir_drop *dm, int dir_fd, const char *path,
			    const struct sizing *sz)
{
	size_t cached_count = sz->from_cache + sz->measured;
	if (sz->measured == 0 && (!sz->cache_loaded || sz->from_cache == sz->cache.count))
		return;
	struct maildir_size_entry *entries = xcalloc(cached_count ? cached_count : 1, sizeof *entries);
	size_t k = 0;
	for (size_t i = 0; i < dm->md.count; i++) {
		if (!sz->cached[i])
			continue;
		const char *base = dm->md.msgs[i].name + SUBDIR_LEN;
		entries[k++] = (struct maildir_size_entry){
			.base = base,
			.base_len = maildir_base_length(base),
			.wire_size = dm->md.msgs[i].size,
			.raw_size = dm->md.msgs[i].raw_size,
		};
	}
	char cerr[512];
	if (maildir_size_cache_save(dir_fd, entries, k, cerr, sizeof cerr) != DB_OK)
		log_warn("Maildir %s: size cache not saved (sizes are measured again at the next "
			 "login): %s",
			 path, cerr);
	free(entries);
}

/* The listing cache, when the directories were stat'ed before they were
 * read and had not changed for a while then (see maildir.h), and every
 * file was served (one that could not be read is tried again at the next
 * login). Else the next login lists them again. */
static void save_listing_cache(struct maildir_drop *dm, int dir_fd, const char *path,
			       const struct maildir_dir_stamp stamps[2],
			       const struct timespec *listed, bool trusted, size_t from_name)
{
	if (!trusted || !maildir_index_trustworthy(stamps, listed)) {
		maildir_index_remove(dir_fd);
		return;
	}
	size_t n = dm->md.count;
	struct maildir_index_item *items = xcalloc(n ? n : 1, sizeof *items);
	for (size_t i = 0; i < n; i++)
		items[i] = (struct maildir_index_item){
			.name = dm->md.msgs[i].name,
			.size = dm->md.msgs[i].size,
			.raw_size = dm->md.msgs[i].raw_size,
		};
	char ierr[512];
	if (maildir_index_save(dir_fd, stamps, listed, items, n, from_name, ierr, sizeof ierr) !=
	    DB_OK) {
		log_warn("Maildir %s: listing cache not saved: %s", path, ierr);
		maildir_index_remove(dir_fd);
	}
	free(items);
}

static int maildir_open(struct db *db, const struct config *cfg, const struct user *u,
			struct maildrop **md_r, char *err, size_t errlen)
{
	int dir_fd;
	bool made;
	int status = maildir_open_or_make(cfg->maildir_root, u->maildir, &dir_fd, &made, err,
					  errlen);
	if (status != DB_OK)
		return status;
	if (made)
		log_info("Maildir %s made for %s: a new user's empty mailbox", u->maildir, u->login);
	struct maildir_drop *cached_dm = open_from_index(cfg, u, dir_fd);
	metrics_listing_cache(cached_dm != NULL);
	if (cached_dm != NULL) {
		maildrop_maildir_imported(&cached_dm->md, dir_fd, u->maildir);
		drop_dir_close(cached_dm);
		*md_r = &cached_dm->md;
		return DB_OK;
	}
	struct listing l = {0};
	struct maildir_dir_stamp stamps[2];
	struct timespec listed;
	bool stamped = false;
	status = list_subdirs(dir_fd, u->maildir, &l, stamps, &listed, &stamped, err, errlen);
	if (status != DB_OK) {
		for (size_t i = 0; i < l.count; i++)
			free(l.items[i].name);
		free(l.items);
		close(dir_fd);
		return status;
	}
	if (l.count > 1)
		qsort(l.items, l.count, sizeof *l.items, compare_items);

	struct maildir_drop *dm = new_drop(cfg, u, dir_fd, l.count);
	struct sizing sz = {0};
	size_listing(dm, dir_fd, u->maildir, &l, &sz);
	save_size_cache(dm, dir_fd, u->maildir, &sz);
	save_listing_cache(dm, dir_fd, u->maildir, stamps, &listed,
			   stamped && sz.unreadable == 0, sz.from_name);
	log_debug("Maildir %s: %zu messages; sizes from names %zu, from the cache %zu, "
		  "measured %zu; %zu skipped",
		  u->maildir, dm->md.count, sz.from_name, sz.from_cache, sz.measured, sz.dropped);
	if (sz.cache_loaded)
		maildir_size_cache_free(&sz.cache);
	free(sz.cached);
	maildrop_maildir_imported(&dm->md, dir_fd, u->maildir);
	drop_dir_close(dm);
	*md_r = &dm->md;
	return DB_OK;
}

/* ---- finding a file again ---- */

/* The files of new/ and cur/ as they are now, sorted by base name. */
struct current {
	struct listing l;
};

static int compare_bases(const void *pa, const void *pb)
{
	const struct item *a = pa, *b = pb;
	return compare_bytes(a->name + SUBDIR_LEN, a->base_len, b->name + SUBDIR_LEN, b->base_len);
}

static struct current *scan_current(int dir_fd, const char *path)
{
	struct current *c = xcalloc(1, sizeof *c);
	char err[512];
	if (list_subdirs(dir_fd, path, &c->l, NULL, NULL, NULL, err, sizeof err) != DB_OK)
		log_warn("looking for moved messages: %s", err);
	if (c->l.count > 1)
		qsort(c->l.items, c->l.count, sizeof *c->l.items, compare_bases);
	return c;
}

static const char *current_name(const struct current *c, const char *name)
{
	struct item key = {.name = (char *)name, .base_len = maildir_base_length(name + SUBDIR_LEN)};
	const struct item *it = bsearch(&key, c->l.items, c->l.count, sizeof *c->l.items,
					compare_bases);
	return it ? it->name : NULL;
}

static void current_free(struct current *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->l.count; i++)
		free(c->l.items[i].name);
	free(c->l.items);
	free(c);
}

/* ---- reading ---- */

/* A message being read: copies of what finding and reading it takes, and
 * its open file, kept for the next piece (a message deleted by another
 * client in the middle of a RETR is still sent whole). */
struct maildir_reader {
	struct maildrop_reader r;
	char *root, *path; /* MaildirRoot (or NULL) and the Maildir, as the drop's */
	char *name;        /* "new/FILE" or "cur/FILE"; where it was found */
	bool renamed;      /* found under another name than the listing's */
	int fd;            /* the message file, or -1 */
};

static struct maildrop_reader *maildir_reader_new(const struct maildrop *md, size_t index)
{
	const struct maildir_drop *dm = (const struct maildir_drop *)md;
	struct maildir_reader *mr = xcalloc(1, sizeof *mr);
	mr->r.ops = md->ops;
	mr->r.index = index;
	mr->root = dm->root != NULL ? xstrdup(dm->root) : NULL;
	mr->path = xstrdup(dm->path);
	mr->name = xstrdup(md->msgs[index].name);
	mr->fd = -1;
	return &mr->r;
}

static void reader_close(struct maildir_reader *mr)
{
	if (mr->fd >= 0)
		close(mr->fd);
	mr->fd = -1;
}

static void maildir_reader_free(struct maildrop *md, struct maildrop_reader *r)
{
	struct maildir_reader *mr = (struct maildir_reader *)r;
	if (md != NULL && mr->renamed) { /* the next RETR looks no more */
		set_name((struct maildir_drop *)md, &md->msgs[r->index], mr->name);
		mr->name = NULL;
	}
	reader_close(mr);
	free(mr->root);
	free(mr->path);
	free(mr->name);
	free(mr);
}

/* Opens the reader's message file, looking for it under another name
 * when another client moved it to cur/, flagged or deleted it. */
static int reader_open(struct maildir_reader *mr, char *err, size_t errlen)
{
	int dir_fd = -1;
	int status = maildir_open_dir(mr->root, mr->path, false, &dir_fd, err, errlen);
	if (status != DB_OK)
		return status;
	bool irregular = false;
	int fd = maildir_open_message(dir_fd, mr->name, false, &irregular);
	if (fd < 0 && errno == ENOENT) {
		struct current *c = scan_current(dir_fd, mr->path);
		const char *now = current_name(c, mr->name);
		if (now != NULL) {
			free(mr->name);
			mr->name = xstrdup(now);
			mr->renamed = true;
			fd = maildir_open_message(dir_fd, mr->name, false, &irregular);
		}
		current_free(c);
		if (now == NULL)
			errno = ENOENT;
	}
	int e = errno;
	close(dir_fd); /* the file is open (or not): the directory can go */
	if (fd < 0) {
		/* a FIFO, directory, socket or device in its place is no
		 * message: never waited on (it would hold a thread) */
		snprintf(err, errlen, "Maildir %s: %s: %s", mr->path, mr->name,
			 irregular      ? "not a regular file: not served"
			 : e == ENOENT ? "the file is gone"
				       : strerror(e));
		return irregular || e == ENOENT ? DB_NOT_FOUND : DB_TEMPFAIL;
	}
	mr->fd = fd;
	return DB_OK;
}

static int maildir_read(struct maildrop_reader *r, struct db *db, uint64_t offset, void *buf,
			size_t len, size_t *got_r, char *err, size_t errlen)
{
	struct maildir_reader *mr = (struct maildir_reader *)r;
	int status;
	if (mr->fd < 0 && (status = reader_open(mr, err, errlen)) != DB_OK)
		return status;
	size_t got = 0;
	while (got < len) {
		ssize_t n = pread(mr->fd, (char *)buf + got, len - got, (off_t)(offset + got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(err, errlen, "Maildir %s: reading %s: %s", mr->path, mr->name,
				 strerror(errno));
			reader_close(mr);
			return DB_TEMPFAIL;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	*got_r = got;
	/* At the end too the file stays open, so that the last piece can go
	 * out from it (maildir_file_dup); the reader is freed right after, on
	 * the session's thread. */
	return DB_OK;
}

static int maildir_file_dup(struct maildrop_reader *r)
{
	const struct maildir_reader *mr = (const struct maildir_reader *)r;
	return mr->fd >= 0 ? fcntl(mr->fd, F_DUPFD_CLOEXEC, 0) : -1;
}

/* Set once a kernel refuses RWF_NOWAIT reads (EOPNOTSUPP): every read
 * then goes to a worker. */
static atomic_bool nowait_unsupported;

static int maildir_read_nowait(struct maildrop_reader *r, uint64_t offset, void *buf, size_t len,
			       size_t *got_r)
{
	struct maildir_reader *mr = (struct maildir_reader *)r;
	if (atomic_load_explicit(&nowait_unsupported, memory_order_relaxed))
		return DB_AGAIN;
	if (mr->fd < 0) {
		int dir_fd = -1;
		if (maildir_open_dir_cached(mr->root, mr->path, &dir_fd) != DB_OK)
			return DB_AGAIN;
		/* a file moved by another client is looked for on a worker */
		bool irregular;
		int fd = maildir_open_message(dir_fd, mr->name, true, &irregular);
		close(dir_fd);
		if (fd < 0) /* a worker tries again, and reports what is wrong */
			return DB_AGAIN;
		mr->fd = fd;
	}
	size_t got = 0;
	while (got < len) {
		struct iovec iov = {(char *)buf + got, len - got};
		ssize_t n = preadv2(mr->fd, &iov, 1, (off_t)(offset + got), RWF_NOWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			if (errno == EOPNOTSUPP && !atomic_exchange(&nowait_unsupported, true))
				log_info("Maildir %s: the filesystem cannot read without waiting "
					 "(RWF_NOWAIT): from now on every RETR reads on a storage "
					 "worker",
					 mr->path);
			return DB_AGAIN; /* not in the page cache, or an error */
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	*got_r = got;
	if (got < len) /* the end */
		reader_close(mr);
	return DB_OK;
}

/* ---- commit ---- */

/* The name a retrieved message takes: cur/BASE:2,FLAGS with S among the
 * flags (kept in ASCII order, as the Maildir convention asks), or NULL
 * when it already has it. Info other than "2," is left as it is. */
static char *seen_name(const char *name)
{
	const char *file = name + SUBDIR_LEN;
	bool in_new = strncmp(name, "new/", SUBDIR_LEN) == 0;
	size_t base_len = maildir_base_length(file);
	const char *info = file[base_len] == ':' ? file + base_len + 1 : NULL;
	struct buf out = BUF_INIT;
	if (info == NULL) {
		buf_printf(&out, "cur/%.*s:2,S", (int)base_len, file);
	} else if (strncmp(info, "2,", 2) != 0 || strchr(info + 2, 'S') != NULL) {
		if (!in_new)
			return NULL;
		buf_printf(&out, "cur/%s", file);
	} else {
		const char *flags = info + 2;
		int before = 0;
		while (flags[before] != '\0' && (unsigned char)flags[before] < 'S')
			before++;
		buf_printf(&out, "cur/%.*s:2,%.*sS%s", (int)base_len, file, before, flags,
			   flags + before);
	}
	return buf_steal(&out);
}

/* Applies one message's change at QUIT; -1 with errno. */
static int apply(struct maildir_drop *dm, struct maildrop_msg *m, bool deleted)
{
	if (deleted)
		return unlinkat(dm->dir_fd, m->name, 0);
	char *target = seen_name(m->name);
	if (target == NULL)
		return 0;
	if (renameat(dm->dir_fd, m->name, dm->dir_fd, target) != 0) {
		int e = errno;
		free(target);
		errno = e;
		return -1;
	}
	set_name(dm, m, target);
	return 0;
}

static int maildir_commit(struct maildrop *md, struct db *db, const char *owner,
			  const bool *deleted, const bool *retrieved, char *err, size_t errlen)
{
	struct maildir_drop *dm = (struct maildir_drop *)md;
	size_t work = 0;
	for (size_t i = 0; i < md->count; i++)
		work += deleted[i] || retrieved[i];
	if (work == 0)
		return DB_OK;
	/* Only the holder of the lock may change the maildrop (SQL checks the
	 * same inside its transaction); this also extends the lease for the
	 * time the pass takes. */
	int status = db->ops->lock_renew(db, md->uid, owner, dm->lease);
	if (status != DB_OK) {
		snprintf(err, errlen, "%s; nothing changed",
			 status == DB_NOT_FOUND ? "the maildrop lock was lost" : db_error(db));
		return status;
	}
	if ((status = drop_dir(dm, err, errlen)) != DB_OK)
		return status;
	/* new/ and cur/ are checked again: no symlink may have replaced them
	 * since the login, since unlinkat and renameat follow one. */
	for (int i = 0; i < 2; i++) {
		int fd = maildir_openat(dm->dir_fd, i == 0 ? "new" : "cur", O_RDONLY | O_DIRECTORY);
		if (fd < 0) {
			snprintf(err, errlen, "Maildir %s: %s/: %s; nothing changed", dm->path,
				 i == 0 ? "new" : "cur", strerror(errno));
			return DB_TEMPFAIL;
		}
		close(fd);
	}
	struct current *c = NULL;
	size_t failed = 0, deletions = 0;
	int first_errno = 0;
	const char *first_name = NULL;
	for (size_t i = 0; i < md->count; i++) {
		if (!deleted[i] && !retrieved[i])
			continue;
		struct maildrop_msg *m = &md->msgs[i];
		deletions += deleted[i];
		if (apply(dm, m, deleted[i]) == 0)
			continue;
		int e = errno;
		if (e == ENOENT) {
			/* moved or flagged by another client: find it by base name;
			 * gone altogether is fine */
			if (c == NULL)
				c = scan_current(dm->dir_fd, dm->path);
			const char *now = current_name(c, m->name);
			if (now == NULL)
				continue;
			set_name(dm, m, xstrdup(now));
			if (apply(dm, m, deleted[i]) == 0 || errno == ENOENT)
				continue;
			e = errno;
		}
		if (deleted[i]) {
			failed++;
			if (first_errno == 0) {
				first_errno = e;
				first_name = m->name;
			}
		} else {
			log_warn("Maildir %s: marking %s as seen: %s", dm->path, m->name,
				 strerror(e));
		}
	}
	current_free(c);
	if (failed > 0) {
		snprintf(err, errlen, "Maildir %s: %zu of %zu deleted messages kept: %s: %s",
			 dm->path, failed, deletions, first_name, strerror(first_errno));
		return DB_TEMPFAIL;
	}
	return DB_OK;
}

static void maildir_free(struct maildrop *md)
{
	if (md == NULL)
		return;
	struct maildir_drop *dm = (struct maildir_drop *)md;
	if (dm->dir_fd >= 0)
		close(dm->dir_fd);
	for (size_t i = 0; i < md->count; i++)
		if (name_owned(dm, md->msgs[i].name))
			free(md->msgs[i].name);
	free(dm->index_buf);
	free(md->msgs);
	free(dm->root);
	free(dm->path);
	free(dm);
}

/* ---- delivery (deliver.c) ---- */

static int maildir_deliver_one(struct db *db, const struct config *cfg, const struct user *u,
			       const char *msg, size_t len, char *err, size_t errlen)
{
	int dir_fd;
	/* a refused path also waits in the queue (75) until it is fixed */
	if (maildir_open_dir(cfg->maildir_root, u->maildir, true, &dir_fd, err, errlen) != DB_OK)
		return DB_TEMPFAIL;
	int status = maildir_deliver(dir_fd, msg, len, pop3_wire_size(msg, len), u->quota, NULL, 0,
				     err, errlen);
	close(dir_fd);
	return status;
}

static int maildir_usage_of(struct db *db, const struct config *cfg, const struct user *u,
			    uint64_t *bytes_r, char *err, size_t errlen)
{
	int dir_fd;
	/* made as the delivery that follows would make it */
	if (maildir_open_dir(cfg->maildir_root, u->maildir, true, &dir_fd, err, errlen) != DB_OK)
		return DB_TEMPFAIL;
	int status = maildir_usage(dir_fd, bytes_r, err, errlen);
	close(dir_fd);
	return status;
}

const struct maildrop_ops maildrop_maildir_ops = {
	.name = "maildir",
	.open = maildir_open,
	.reader_new = maildir_reader_new,
	.read = maildir_read,
	.read_nowait = maildir_read_nowait,
	.file_dup = maildir_file_dup,
	.reader_free = maildir_reader_free,
	.commit = maildir_commit,
	.free = maildir_free,
	.deliver = maildir_deliver_one,
	.usage = maildir_usage_of,
};
