/* Maildir caches: the size cache and the listing cache of a Maildir's
 * top directory (see maildir.h). */
#include "maildir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "db.h"
#include "xalloc.h"

/* A size cache larger than this is not a cache we wrote (100,000 entries
 * take about 7 MB). */
#define SIZE_CACHE_MAX (512u * 1024 * 1024)

/* ---- the size cache ---- */

static uint64_t hash_name(const char *s, size_t n)
{
	uint64_t h = 14695981039346656037ull; /* FNV-1a */
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 1099511628211ull;
	}
	return h;
}

static bool parse_u64(const char **p, const char *end, char stop, uint64_t *v_r)
{
	const char *s = *p;
	uint64_t v = 0;
	while (s < end && *s >= '0' && *s <= '9') {
		if (v > (UINT64_MAX - 9) / 10)
			return false;
		v = v * 10 + (uint64_t)(*s++ - '0');
	}
	if (s == *p || s >= end || *s != stop)
		return false;
	*p = s + 1;
	*v_r = v;
	return true;
}

static bool parse_cache(struct maildir_size_cache *c, const char *text, size_t len)
{
	static const char header[] = "tpops-sizes 1\n";
	if (len < sizeof header - 1 || memcmp(text, header, sizeof header - 1) != 0)
		return false;
	const char *p = text + sizeof header - 1, *end = text + len;
	size_t cap = 0;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL)
			return false;
		if (nl - p >= 4 && memcmp(p, "end ", 4) == 0) {
			const char *q = p + 4;
			uint64_t n;
			return parse_u64(&q, nl + 1, '\n', &n) && n == c->count && nl + 1 == end;
		}
		struct maildir_size_entry e = {0};
		if (!parse_u64(&p, nl, ' ', &e.wire_size) || !parse_u64(&p, nl, ' ', &e.raw_size) ||
		    p >= nl)
			return false;
		e.base = p;
		e.base_len = (size_t)(nl - p);
		if (c->count == cap) {
			cap = cap ? 2 * cap : 1024;
			c->entries = xrealloc(c->entries, cap * sizeof *c->entries);
		}
		c->entries[c->count++] = e;
		p = nl + 1;
	}
	return false; /* no end line: cut short */
}

bool maildir_size_cache_parse(struct maildir_size_cache *cache, char *text, size_t len)
{
	*cache = (struct maildir_size_cache){.text = text};
	if (!parse_cache(cache, text, len)) {
		maildir_size_cache_free(cache);
		return false;
	}
	size_t size = 16;
	while (size < 2 * cache->count)
		size *= 2;
	cache->table_size = size;
	cache->table = xcalloc(size, sizeof *cache->table);
	for (size_t i = 0; i < cache->count; i++) {
		struct maildir_size_entry *e = &cache->entries[i];
		size_t h = (size_t)hash_name(e->base, e->base_len) & (size - 1);
		while (cache->table[h] != 0)
			h = (h + 1) & (size - 1);
		cache->table[h] = i + 1;
	}
	return true;
}

/* Opened with O_NONBLOCK: a FIFO in its place must not hold the worker. */
void maildir_size_cache_load(int maildir_fd, struct maildir_size_cache *cache)
{
	*cache = (struct maildir_size_cache){0};
	int fd = openat(maildir_fd, MAILDIR_SIZE_CACHE,
			O_RDONLY | O_NONBLOCK | O_NOCTTY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return;
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
	    (uint64_t)st.st_size > SIZE_CACHE_MAX) {
		close(fd);
		return;
	}
	size_t len = (size_t)st.st_size, got = 0;
	char *text = xmalloc(len + 1);
	while (got < len) {
		ssize_t n = read(fd, text + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	text[got] = '\0';
	maildir_size_cache_parse(cache, text, got);
}

struct maildir_size_entry *maildir_size_cache_find(struct maildir_size_cache *cache,
						   const char *base, size_t base_len)
{
	if (cache->table_size == 0)
		return NULL;
	size_t mask = cache->table_size - 1;
	for (size_t h = (size_t)hash_name(base, base_len) & mask; cache->table[h] != 0;
	     h = (h + 1) & mask) {
		struct maildir_size_entry *e = &cache->entries[cache->table[h] - 1];
		if (e->base_len == base_len && memcmp(e->base, base, base_len) == 0)
			return e;
	}
	return NULL;
}

void maildir_size_cache_free(struct maildir_size_cache *cache)
{
	free(cache->text);
	free(cache->entries);
	free(cache->table);
	*cache = (struct maildir_size_cache){0};
}

/* Writes data to tmp/NAME.<unique> and renames it over NAME in the
 * Maildir, so that a reader sees one version or the other. */
static int replace_file(int maildir_fd, const char *final, const void *data, size_t len,
			char *err, size_t errlen)
{
	int status = DB_TEMPFAIL;
	int tmp_fd = maildir_openat(maildir_fd, "tmp", O_RDONLY | O_DIRECTORY);
	char name[300];
	char unique[256];
	maildir_unique_name(unique, sizeof unique);
	snprintf(name, sizeof name, "%s.%s", final, unique);
	int fd = tmp_fd < 0 ? -1
			    : openat(tmp_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
				     0600);
	if (fd < 0) {
		snprintf(err, errlen, "creating tmp/%s: %s", name, strerror(errno));
	} else if (maildir_write_all(fd, data, len) != 0) {
		snprintf(err, errlen, "writing tmp/%s: %s", name, strerror(errno));
		close(fd);
		(void)unlinkat(tmp_fd, name, 0);
	} else if (close(fd) != 0) {
		snprintf(err, errlen, "closing tmp/%s: %s", name, strerror(errno));
		(void)unlinkat(tmp_fd, name, 0);
	} else if (renameat(tmp_fd, name, maildir_fd, final) != 0) {
		snprintf(err, errlen, "renaming tmp/%s to %s: %s", name, final, strerror(errno));
		(void)unlinkat(tmp_fd, name, 0);
	} else {
		status = DB_OK;
	}
	if (tmp_fd >= 0)
		close(tmp_fd);
	return status;
}

int maildir_size_cache_save(int maildir_fd, const struct maildir_size_entry *entries,
			    size_t count, char *err, size_t errlen)
{
	struct buf text = BUF_INIT;
	buf_append_str(&text, "tpops-sizes 1\n");
	size_t written = 0;
	for (size_t i = 0; i < count; i++) {
		const struct maildir_size_entry *e = &entries[i];
		if (e->base_len == 0 || memchr(e->base, '\n', e->base_len) != NULL)
			continue; /* such a name is measured at every login */
		buf_printf(&text, "%llu %llu ", (unsigned long long)e->wire_size,
			   (unsigned long long)e->raw_size);
		buf_append(&text, e->base, e->base_len);
		buf_append_char(&text, '\n');
		written++;
	}
	buf_printf(&text, "end %zu\n", written);

	int status = replace_file(maildir_fd, MAILDIR_SIZE_CACHE, text.data, text.len, err, errlen);
	buf_free(&text);
	return status;
}

/* ---- the listing cache ---- */

#define MAILDIR_INDEX_VERSION 1
static const char index_magic[8] = {'t', 'p', 'o', 'p', 's', 'i', 'd', 'x'};
/* More than any Maildir we serve (and than a 32-bit name offset allows). */
#define INDEX_MAX_MESSAGES (16u * 1024 * 1024)
#define INDEX_MAX_NAMES (1024u * 1024 * 1024)

/* A checksum against damage (not against a forger: whoever can write the
 * file can write the Maildir), 8 octets a step. */
static uint64_t index_hash(uint64_t h, const void *data, size_t len)
{
	const unsigned char *p = data;
	for (; len >= 8; p += 8, len -= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		h = (h ^ w) * 0x9e3779b97f4a7c15ull;
		h ^= h >> 29;
	}
	for (; len > 0; p++, len--)
		h = (h ^ *p) * 1099511628211ull;
	return h;
}

static uint64_t index_checksum(const char *buf, size_t len)
{
	struct maildir_index_header h;
	memcpy(&h, buf, sizeof h);
	h.checksum = 0;
	uint64_t sum = index_hash(14695981039346656037ull, &h, sizeof h);
	return index_hash(sum, buf + sizeof h, len - sizeof h);
}

/* What a listing records of a directory: a change by any program moves
 * its mtime and ctime (nanoseconds kept), a replaced one its inode. */
static struct maildir_dir_stamp stamp_of(const struct stat *st)
{
	return (struct maildir_dir_stamp){
		.dev = (uint64_t)st->st_dev,
		.ino = (uint64_t)st->st_ino,
		.size = (uint64_t)st->st_size,
		.mtime_sec = (int64_t)st->st_mtim.tv_sec,
		.mtime_nsec = (int64_t)st->st_mtim.tv_nsec,
		.ctime_sec = (int64_t)st->st_ctim.tv_sec,
		.ctime_nsec = (int64_t)st->st_ctim.tv_nsec,
	};
}

bool maildir_dir_stamp(int dir_fd, struct maildir_dir_stamp *stamp)
{
	struct stat st;
	if (fstat(dir_fd, &st) != 0)
		return false;
	if (!S_ISDIR(st.st_mode)) {
		errno = ENOTDIR;
		return false;
	}
	*stamp = stamp_of(&st);
	return true;
}

bool maildir_dir_stamps(int maildir_fd, struct maildir_dir_stamp stamps[2])
{
	for (int i = 0; i < 2; i++) {
		struct stat st;
		if (fstatat(maildir_fd, maildir_subdir_names[i + 1], &st, AT_SYMLINK_NOFOLLOW) != 0 ||
		    !S_ISDIR(st.st_mode))
			return false;
		stamps[i] = stamp_of(&st);
	}
	return true;
}

bool maildir_index_trustworthy(const struct maildir_dir_stamp stamps[2],
			       const struct timespec *listed)
{
	/* in nanoseconds, with no overflow for any time this side of 2262 */
	if (listed->tv_sec < 0 || listed->tv_sec > INT64_MAX / 1000000000 - 1)
		return false;
	int64_t now = (int64_t)listed->tv_sec * 1000000000 + listed->tv_nsec;
	for (int i = 0; i < 2; i++) {
		const struct maildir_dir_stamp *s = &stamps[i];
		if (s->mtime_sec < 0 || s->mtime_sec > INT64_MAX / 1000000000 - 1)
			return false;
		int64_t m = s->mtime_sec * 1000000000 + s->mtime_nsec;
		if (m > now - MAILDIR_INDEX_MARGIN_NS)
			return false;
	}
	return true;
}

void maildir_index_free(struct maildir_index *idx)
{
	free(idx->buf);
	*idx = (struct maildir_index){0};
}

bool maildir_index_parse(struct maildir_index *idx, char *buf, size_t len,
			 const struct maildir_dir_stamp stamps[2])
{
	*idx = (struct maildir_index){0};
	struct maildir_index_header h;
	if (len < sizeof h)
		goto bad;
	memcpy(&h, buf, sizeof h);
	if (memcmp(h.magic, index_magic, sizeof index_magic) != 0 ||
	    h.version != MAILDIR_INDEX_VERSION || h.header_size != sizeof h ||
	    h.entry_size != sizeof(struct maildir_index_entry) || h.count > INDEX_MAX_MESSAGES ||
	    h.from_name > h.count || h.names_len > INDEX_MAX_NAMES ||
	    len != sizeof h + h.count * sizeof(struct maildir_index_entry) + h.names_len)
		goto bad;
	if (memcmp(h.dirs, stamps, sizeof h.dirs) != 0)
		goto bad; /* new/ or cur/ changed since */
	struct timespec listed = {.tv_sec = (time_t)h.listed_sec, .tv_nsec = (long)h.listed_nsec};
	if (h.listed_nsec < 0 || h.listed_nsec >= 1000000000 ||
	    !maildir_index_trustworthy(h.dirs, &listed))
		goto bad;
	if (index_checksum(buf, len) != h.checksum)
		goto bad;
	const struct maildir_index_entry *entries =
		(const struct maildir_index_entry *)(void *)(buf + sizeof h);
	const char *names = buf + sizeof h + h.count * sizeof *entries;
	/* every name whole and safe: "new/" or "cur/" and a file name that
	 * does not start with '.' and holds no '/' */
	for (size_t i = 0; i < h.count; i++) {
		const struct maildir_index_entry *e = &entries[i];
		if ((uint64_t)e->name_off + e->name_len >= h.names_len || e->name_len <= 4)
			goto bad;
		const char *n = names + e->name_off;
		if ((memcmp(n, "new/", 4) != 0 && memcmp(n, "cur/", 4) != 0) || n[4] == '.' ||
		    strnlen(n, (size_t)e->name_len + 1) != e->name_len ||
		    memchr(n + 4, '/', (size_t)e->name_len - 4) != NULL ||
		    (size_t)e->base_len > (size_t)e->name_len - 4 ||
		    (n[4 + e->base_len] != ':' && n[4 + e->base_len] != '\0'))
			goto bad;
	}
	*idx = (struct maildir_index){
		.buf = buf,
		.len = len,
		.entries = entries,
		.names = names,
		.count = (size_t)h.count,
		.from_name = (size_t)h.from_name,
	};
	return true;
bad:
	free(buf);
	return false;
}

/* Opened with O_NONBLOCK, as the size cache. */
bool maildir_index_load(int maildir_fd, const struct maildir_dir_stamp stamps[2],
			struct maildir_index *idx)
{
	*idx = (struct maildir_index){0};
	int fd = openat(maildir_fd, MAILDIR_INDEX,
			O_RDONLY | O_NONBLOCK | O_NOCTTY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return false;
	struct stat st;
	struct maildir_index_header h;
	/* the header first: a cache of other directories is not read whole */
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size < sizeof h ||
	    (uint64_t)st.st_size > SIZE_CACHE_MAX ||
	    pread(fd, &h, sizeof h, 0) != (ssize_t)sizeof h ||
	    memcmp(h.magic, index_magic, sizeof index_magic) != 0 ||
	    memcmp(h.dirs, stamps, sizeof h.dirs) != 0) {
		close(fd);
		return false;
	}
	size_t len = (size_t)st.st_size, got = 0;
	char *buf = xmalloc(len);
	while (got < len) {
		ssize_t n = pread(fd, buf + got, len - got, (off_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	/* one byte more than fstat said: the file grew, so it is not whole */
	char extra;
	bool whole = got == len && pread(fd, &extra, 1, (off_t)len) == 0;
	close(fd);
	if (!whole) {
		free(buf);
		return false;
	}
	return maildir_index_parse(idx, buf, len, stamps);
}

int maildir_index_save(int maildir_fd, const struct maildir_dir_stamp stamps[2],
		       const struct timespec *listed, const struct maildir_index_item *items,
		       size_t count, size_t from_name, char *err, size_t errlen)
{
	size_t names_len = 0;
	for (size_t i = 0; i < count; i++) {
		size_t n = strlen(items[i].name);
		if (n <= 4 || n > UINT16_MAX || names_len + n + 1 > INDEX_MAX_NAMES) {
			snprintf(err, errlen, "a name cannot be cached");
			return DB_PERMFAIL;
		}
		names_len += n + 1;
	}
	if (count > INDEX_MAX_MESSAGES || from_name > count) {
		snprintf(err, errlen, "too many messages to cache");
		return DB_PERMFAIL;
	}
	struct maildir_index_header h = {
		.version = MAILDIR_INDEX_VERSION,
		.header_size = sizeof h,
		.entry_size = sizeof(struct maildir_index_entry),
		.count = count,
		.from_name = from_name,
		.names_len = names_len,
		.listed_sec = (int64_t)listed->tv_sec,
		.listed_nsec = (int64_t)listed->tv_nsec,
	};
	memcpy(h.magic, index_magic, sizeof index_magic);
	memcpy(h.dirs, stamps, sizeof h.dirs);
	size_t len = sizeof h + count * sizeof(struct maildir_index_entry) + names_len;
	char *buf = xcalloc(1, len);
	struct maildir_index_entry *entries = (struct maildir_index_entry *)(void *)(buf + sizeof h);
	char *names = buf + sizeof h + count * sizeof *entries;
	size_t off = 0;
	for (size_t i = 0; i < count; i++) {
		size_t n = strlen(items[i].name);
		entries[i] = (struct maildir_index_entry){
			.size = items[i].size,
			.raw_size = items[i].raw_size,
			.name_off = (uint32_t)off,
			.name_len = (uint16_t)n,
			.base_len = (uint16_t)maildir_base_length(items[i].name + 4),
		};
		memcpy(names + off, items[i].name, n + 1);
		off += n + 1;
	}
	memcpy(buf, &h, sizeof h);
	h.checksum = index_checksum(buf, len);
	memcpy(buf, &h, sizeof h);
	int status = replace_file(maildir_fd, MAILDIR_INDEX, buf, len, err, errlen);
	free(buf);
	return status;
}

void maildir_index_remove(int maildir_fd)
{
	(void)unlinkat(maildir_fd, MAILDIR_INDEX, 0);
}
