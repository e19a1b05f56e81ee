/* Imported UIDLs of a Maildir: the tpops-uidls file (see imported_uidls.h). */
#include "imported_uidls.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "db.h"
#include "maildir.h"
#include "xalloc.h"

#define BASE_MAX 255

static bool printable(const char *s, size_t len, size_t max)
{
	if (len < 1 || len > max)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			return false;
	return true;
}

bool imported_uidl_valid(const char *s, size_t len)
{
	return printable(s, len, POP3_MAX_UIDL);
}

bool imported_base_valid(const char *s, size_t len)
{
	return printable(s, len, BASE_MAX);
}

static size_t hash_of(const char *s, size_t len)
{
	size_t h = 14695981039346656037u; /* FNV-1a */
	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211u;
	return h;
}

static size_t *slot_of(const struct imported_uidls *u, const char *base, size_t base_len)
{
	size_t mask = u->table_size - 1;
	for (size_t i = hash_of(base, base_len) & mask;; i = (i + 1) & mask) {
		size_t *slot = &u->table[i];
		if (*slot == 0)
			return slot;
		const struct imported_uidl *e = &u->entries[*slot - 1];
		if (e->base_len == base_len && memcmp(e->base, base, base_len) == 0)
			return slot;
	}
}

const struct imported_uidl *imported_uidls_find(const struct imported_uidls *u, const char *base,
						size_t base_len)
{
	if (u->count == 0)
		return NULL;
	size_t *slot = slot_of(u, base, base_len);
	return *slot ? &u->entries[*slot - 1] : NULL;
}

/* One "M BASE UIDL" line without its newline; false when it is not one. */
static bool parse_line(const char *line, size_t len, char *mark, const char **base,
		       size_t *base_len, const char **uidl, size_t *uidl_len)
{
	if (len < 5 || (line[0] != '?' && line[0] != '+') || line[1] != ' ')
		return false;
	const char *b = line + 2, *end = line + len;
	const char *sp = memchr(b, ' ', (size_t)(end - b));
	if (sp == NULL)
		return false;
	*mark = line[0];
	*base = b;
	*base_len = (size_t)(sp - b);
	*uidl = sp + 1;
	*uidl_len = (size_t)(end - sp - 1);
	return imported_base_valid(*base, *base_len) && imported_uidl_valid(*uidl, *uidl_len);
}

void imported_uidls_parse(struct imported_uidls *u, char *text, size_t len)
{
	memset(u, 0, sizeof *u);
	u->text = text;
	u->len = len;
	size_t magic_len = strlen(IMPORTED_UIDLS_MAGIC);
	if (len < magic_len || memcmp(text, IMPORTED_UIDLS_MAGIC, magic_len) != 0) {
		if (len > 0)
			u->bad_line = 1;
		return;
	}
	u->parsed_len = magic_len;
	/* at most one entry per line */
	size_t lines = 0;
	for (size_t i = magic_len; i < len; i++)
		lines += text[i] == '\n';
	u->entries = xcalloc(lines ? lines : 1, sizeof *u->entries);
	u->table_size = 16;
	while (u->table_size < 2 * lines)
		u->table_size *= 2;
	u->table = xcalloc(u->table_size, sizeof *u->table);
	size_t pos = magic_len, line_no = 1;
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		if (nl == NULL) /* an append cut short */
			break;
		line_no++;
		size_t line_len = (size_t)(nl - (text + pos));
		char mark;
		const char *base, *uidl;
		size_t base_len, uidl_len;
		if (!parse_line(text + pos, line_len, &mark, &base, &base_len, &uidl, &uidl_len)) {
			u->bad_line = line_no;
			break;
		}
		size_t *slot = slot_of(u, base, base_len);
		struct imported_uidl *e;
		if (*slot == 0) {
			e = &u->entries[u->count];
			*e = (struct imported_uidl){
				.base = base, .base_len = base_len, .order = u->count};
			*slot = ++u->count;
		} else {
			e = &u->entries[*slot - 1];
		}
		e->uidl = uidl;
		e->uidl_len = uidl_len;
		e->done = mark == '+';
		pos = (size_t)(nl - text) + 1;
		u->parsed_len = pos;
	}
}

int imported_uidls_load(int maildir_fd, struct imported_uidls *u, char *err, size_t errlen)
{
	memset(u, 0, sizeof *u);
	/* O_NONBLOCK: a FIFO put there must not hold up the worker */
	int fd = maildir_openat(maildir_fd, IMPORTED_UIDLS_FILE, O_RDONLY | O_NONBLOCK);
	if (fd < 0) {
		if (errno == ENOENT)
			return DB_OK;
		snprintf(err, errlen, "%s: %s", IMPORTED_UIDLS_FILE, strerror(errno));
		return DB_TEMPFAIL;
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size > IMPORTED_UIDLS_MAX) {
		snprintf(err, errlen, "%s: %s", IMPORTED_UIDLS_FILE,
			 !S_ISREG(st.st_mode) ? "not a regular file" : "too large");
		close(fd);
		return DB_TEMPFAIL;
	}
	size_t cap = (size_t)st.st_size + 1, len = 0;
	char *text = xmalloc(cap);
	for (;;) {
		if (len + 1 == cap) { /* it grew meanwhile */
			cap *= 2;
			text = xrealloc(text, cap);
		}
		ssize_t n = read(fd, text + len, cap - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(err, errlen, "reading %s: %s", IMPORTED_UIDLS_FILE,
				 strerror(errno));
			free(text);
			close(fd);
			return DB_TEMPFAIL;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	text[len] = '\0';
	imported_uidls_parse(u, text, len);
	return DB_OK;
}

void imported_uidls_free(struct imported_uidls *u)
{
	free(u->text);
	free(u->entries);
	free(u->table);
	memset(u, 0, sizeof *u);
}

int imported_uidls_truncate(int maildir_fd, const struct imported_uidls *u)
{
	if (u->parsed_len >= u->len)
		return 0;
	int fd = maildir_openat(maildir_fd, IMPORTED_UIDLS_FILE, O_WRONLY);
	if (fd < 0)
		return -1;
	int rc = ftruncate(fd, (off_t)u->parsed_len);
	if (rc == 0)
		rc = fsync(fd);
	int e = errno;
	close(fd);
	errno = e;
	return rc;
}

int imported_uidls_append(int maildir_fd, char mark, const char *base, const char *uidl)
{
	if ((mark != '?' && mark != '+') || !imported_base_valid(base, strlen(base)) ||
	    !imported_uidl_valid(uidl, strlen(uidl))) {
		errno = EINVAL;
		return -1;
	}
	int fd = maildir_openat(maildir_fd, IMPORTED_UIDLS_FILE, O_WRONLY | O_APPEND);
	bool created = false;
	if (fd < 0 && errno == ENOENT) {
		/* the first line is written under a temporary name and the file
		 * renamed into place, so that no reader sees it without it */
		char tmp[64];
		snprintf(tmp, sizeof tmp, "tmp/.tpops-uidls.%ld", (long)getpid());
		int t = maildir_openat(maildir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC);
		if (t < 0)
			return -1;
		if (fchmod(t, 0600) != 0 ||
		    maildir_write_all(t, IMPORTED_UIDLS_MAGIC, strlen(IMPORTED_UIDLS_MAGIC)) != 0 ||
		    fsync(t) != 0) {
			int e = errno;
			close(t);
			unlinkat(maildir_fd, tmp, 0);
			errno = e;
			return -1;
		}
		close(t);
		/* never over a file another importer made meanwhile */
		if (renameat2(maildir_fd, tmp, maildir_fd, IMPORTED_UIDLS_FILE, RENAME_NOREPLACE) !=
			    0 &&
		    errno != EEXIST) {
			int e = errno;
			unlinkat(maildir_fd, tmp, 0);
			errno = e;
			return -1;
		}
		unlinkat(maildir_fd, tmp, 0);
		created = true;
		fd = maildir_openat(maildir_fd, IMPORTED_UIDLS_FILE, O_WRONLY | O_APPEND);
	}
	if (fd < 0)
		return -1;
	struct buf line = BUF_INIT;
	buf_printf(&line, "%c %s %s\n", mark, base, uidl);
	int rc = maildir_write_all(fd, line.data, line.len);
	if (rc == 0)
		rc = fsync(fd);
	int e = errno;
	buf_free(&line);
	close(fd);
	if (rc == 0 && created)
		(void)fsync(maildir_fd);
	errno = e;
	return rc;
}

void imported_uidl_avoid(const char *own, char out[POP3_MAX_UIDL + 1])
{
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	if (EVP_Digest(own, strlen(own), digest, &n, EVP_sha256(), NULL) != 1)
		n = 0; /* cannot happen with a built-in digest */
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;
	out[o++] = 'Z';
	for (unsigned i = 0; i < n && o + 2 <= POP3_MAX_UIDL; i++) {
		out[o++] = hex[digest[i] >> 4];
		out[o++] = hex[digest[i] & 15];
	}
	out[o] = '\0';
}
