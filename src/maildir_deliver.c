/* Maildir delivery: unique names and their size fields, UIDLs, durable
 * delivery (tmp/ -> fsync -> new/) and the usage a quota counts (see
 * maildir.h). */
#include "maildir.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "db.h"
#include "xalloc.h"

/* Fresh unique names tried when one is taken (another deliverer on the same
 * host with a recycled pid in the same microsecond). */
#define UNIQUE_NAME_TRIES 10

/* ---- names ---- */

/* The host part of unique names: '/' and ':' are what the Maildir
 * convention requires escaping; ',' starts the size fields and '\\' is the
 * escape itself; anything outside 0x21-0x7E would make the UIDL invalid. */
static void sanitised_host(char *out, size_t size)
{
	char host[256];
	if (gethostname(host, sizeof host) != 0 || host[0] == '\0')
		snprintf(host, sizeof host, "localhost");
	host[sizeof host - 1] = '\0';
	size_t o = 0;
	for (const unsigned char *p = (const unsigned char *)host; *p != '\0'; p++) {
		bool plain = *p >= 0x21 && *p <= 0x7e && *p != '/' && *p != ':' && *p != ',' &&
			     *p != '\\';
		if (plain && o + 1 < size) {
			out[o++] = (char)*p;
		} else if (!plain && o + 4 < size) {
			snprintf(out + o, size - o, "\\%03o", *p);
			o += 4;
		} else {
			break;
		}
	}
	out[o] = '\0';
}

void maildir_unique_name(char *buf, size_t size)
{
	static unsigned counter;
	char host[128];
	sanitised_host(host, sizeof host);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	unsigned q = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
	snprintf(buf, size, "%lld.M%06ldP%ldQ%u.%s", (long long)ts.tv_sec, ts.tv_nsec / 1000,
		 (long)getpid(), q, host);
}

size_t maildir_base_length(const char *name)
{
	return strcspn(name, ":");
}

bool maildir_size_field(const char *name, size_t base_len, char field, uint64_t *value_r)
{
	for (size_t i = 0; i + 3 < base_len; i++) {
		if (name[i] != ',' || name[i + 1] != field || name[i + 2] != '=')
			continue;
		uint64_t v = 0;
		size_t j = i + 3;
		for (; j < base_len && name[j] >= '0' && name[j] <= '9'; j++) {
			if (v > (UINT64_MAX - 9) / 10)
				return false;
			v = v * 10 + (uint64_t)(name[j] - '0');
		}
		if (j > i + 3 && (j == base_len || name[j] == ',')) {
			*value_r = v;
			return true;
		}
	}
	return false;
}

void maildir_uidl(const char *base, size_t base_len, char out[POP3_MAX_UIDL + 1])
{
	bool valid = base_len >= 1 && base_len <= POP3_MAX_UIDL;
	for (size_t i = 0; valid && i < base_len; i++)
		valid = (unsigned char)base[i] >= 0x21 && (unsigned char)base[i] <= 0x7e;
	if (valid) {
		memcpy(out, base, base_len);
		out[base_len] = '\0';
		return;
	}
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	if (EVP_Digest(base, base_len, digest, &n, EVP_sha256(), NULL) != 1)
		n = 0; /* cannot happen with a built-in digest */
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;
	out[o++] = 'X';
	for (unsigned i = 0; i < n && o + 2 <= POP3_MAX_UIDL; i++) {
		out[o++] = hex[digest[i] >> 4];
		out[o++] = hex[digest[i] & 15];
	}
	out[o] = '\0';
}

/* ---- delivery ---- */

int maildir_write_all(int fd, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, data, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

const char *maildir_write_sync_close(int fd, const char *data, size_t len, int *errno_r)
{
	const char *failed = NULL;
	if (maildir_write_all(fd, data, len) != 0)
		failed = "writing";
	else if (fsync(fd) != 0)
		failed = "fsync of";
	*errno_r = errno;
	if (close(fd) != 0 && failed == NULL) {
		failed = "closing";
		*errno_r = errno;
	}
	return failed;
}

/* Moves tmp/name into new/ under a name no other file has: renameat2 with
 * RENAME_NOREPLACE, or link + unlink where the filesystem lacks it. */
static int move_into_new(int tmp_fd, const char *name, int new_fd)
{
	if (renameat2(tmp_fd, name, new_fd, name, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -1;
	if (linkat(tmp_fd, name, new_fd, name, 0) != 0)
		return -1;
	(void)unlinkat(tmp_fd, name, 0);
	return 0;
}

int maildir_deliver(int maildir_fd, const char *msg, size_t len, uint64_t wire_size,
		    int64_t quota, char *name_r, size_t name_size, char *err, size_t errlen)
{
	/* A file size limit (RLIMIT_FSIZE) must fail the write with EFBIG, which
	 * ends in exit 75, not kill the delivery with SIGXFSZ. */
	signal(SIGXFSZ, SIG_IGN);

	int dirs[3];
	int status = maildir_open_subdirs(maildir_fd, true, dirs, err, errlen);
	if (status != DB_OK)
		return DB_TEMPFAIL;
	int tmp_fd = dirs[0], new_fd = dirs[1];
	char name[512] = "";
	status = DB_TEMPFAIL;

	if (quota > 0) {
		uint64_t used = 0;
		if (maildir_usage(maildir_fd, &used, err, errlen) != DB_OK)
			goto out;
		if (used + len > (uint64_t)quota) {
			snprintf(err, errlen,
				 "over quota: %llu octets stored, %zu more would exceed %lld",
				 (unsigned long long)used, len, (long long)quota);
			status = DB_QUOTA;
			goto out;
		}
	}

	bool moved = false;
	for (int attempt = 0; attempt < UNIQUE_NAME_TRIES && !moved; attempt++) {
		char unique[256];
		maildir_unique_name(unique, sizeof unique);
		snprintf(name, sizeof name, "%s,S=%zu,W=%llu", unique, len,
			 (unsigned long long)wire_size);
		int fd = openat(tmp_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0) {
			if (errno == EEXIST)
				continue;
			snprintf(err, errlen, "creating tmp/%s: %s", name, strerror(errno));
			goto out;
		}
		int e = 0;
		const char *failed = maildir_write_sync_close(fd, msg, len, &e);
		if (failed != NULL) {
			snprintf(err, errlen, "%s tmp/%s: %s", failed, name, strerror(e));
			(void)unlinkat(tmp_fd, name, 0);
			goto out;
		}
		if (move_into_new(tmp_fd, name, new_fd) == 0) {
			moved = true;
		} else {
			int move_errno = errno;
			(void)unlinkat(tmp_fd, name, 0);
			if (move_errno != EEXIST) {
				snprintf(err, errlen, "moving tmp/%s into new/: %s", name,
					 strerror(move_errno));
				goto out;
			}
		}
	}
	if (!moved) {
		snprintf(err, errlen, "no unique name in tmp/ after %d tries", UNIQUE_NAME_TRIES);
		goto out;
	}
	/* The rename is durable only once the directory is: until then the
	 * delivery has not happened, and must not be reported as done. */
	if (fsync(new_fd) != 0) {
		snprintf(err, errlen, "fsync of new/: %s", strerror(errno));
		(void)unlinkat(new_fd, name, 0);
		goto out;
	}
	if (name_r != NULL)
		snprintf(name_r, name_size, "%s", name);
	status = DB_OK;
out:
	for (int i = 0; i < 3; i++)
		close(dirs[i]);
	return status;
}

struct usage_ctx {
	uint64_t bytes;
	struct maildir_size_cache cache;
	bool cache_loaded;
	int maildir_fd;
};

static void add_usage(const char *name, int dir_fd, void *ctx)
{
	struct usage_ctx *u = ctx;
	size_t base_len = maildir_base_length(name);
	uint64_t size;
	if (maildir_size_field(name, base_len, 'S', &size)) {
		u->bytes += size;
		return;
	}
	if (!u->cache_loaded) {
		maildir_size_cache_load(u->maildir_fd, &u->cache);
		u->cache_loaded = true;
	}
	struct maildir_size_entry *e = maildir_size_cache_find(&u->cache, name, base_len);
	struct stat st;
	if (e != NULL)
		u->bytes += e->raw_size;
	else if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
		u->bytes += (uint64_t)st.st_size;
}

int maildir_usage(int maildir_fd, uint64_t *bytes_r, char *err, size_t errlen)
{
	struct usage_ctx u = {.maildir_fd = maildir_fd};
	int status = DB_OK;
	for (int i = 1; i < 3 && status == DB_OK; i++) {
		int fd = maildir_openat(maildir_fd, maildir_subdir_names[i], O_RDONLY | O_DIRECTORY);
		if (fd < 0) {
			snprintf(err, errlen, "the Maildir's %s/: %s", maildir_subdir_names[i],
				 strerror(errno));
			status = DB_TEMPFAIL;
			break;
		}
		status = maildir_list(fd, maildir_subdir_names[i], add_usage, &u, err, errlen);
		close(fd);
	}
	if (u.cache_loaded)
		maildir_size_cache_free(&u.cache);
	*bytes_r = u.bytes;
	return status;
}
