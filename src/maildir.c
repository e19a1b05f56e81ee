/* Maildir on disk: safe path resolution below MaildirRoot, unique names,
 * durable delivery, size fields and the size cache (see maildir.h). */
#include "maildir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "db.h"
#include "xalloc.h"

/* A size cache larger than this is not a cache we wrote (100,000 entries
 * take about 7 MB). */
#define SIZE_CACHE_MAX (512u * 1024 * 1024)
/* Fresh unique names tried when one is taken (another deliverer on the same
 * host with a recycled pid in the same microsecond). */
#define UNIQUE_NAME_TRIES 10

static const char *const subdir_names[3] = {"tmp", "new", "cur"};

/* openat2() resolving beneath dirfd, following no symlink at all (with
 * no_symlinks) or none that leads out. Without openat2 (Linux < 5.6) the
 * last component is opened with O_NOFOLLOW, the best plain openat can do;
 * callers never pass ".." components. */
static int open_beneath(int dirfd, const char *path, int flags, bool no_symlinks)
{
#ifdef SYS_openat2
	struct open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC),
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS |
			   (no_symlinks ? RESOLVE_NO_SYMLINKS : 0),
	};
	for (int tries = 0; tries < 5; tries++) {
		long fd = syscall(SYS_openat2, dirfd, path, &how, sizeof how);
		if (fd >= 0)
			return (int)fd;
		/* EAGAIN: a rename raced with the resolution; try again */
		if (errno != EAGAIN)
			break;
	}
	if (errno != ENOSYS)
		return -1;
#endif
	return openat(dirfd, path, flags | O_CLOEXEC | O_NOFOLLOW);
}

int maildir_openat(int maildir_fd, const char *path, int flags)
{
	return open_beneath(maildir_fd, path, flags, true);
}

/* As open_beneath, but only from the kernel's lookup caches
 * (RESOLVE_CACHED, Linux 5.12): -1 with EAGAIN when the lookup would read
 * a directory from disk, race a rename, or the kernel cannot do it. */
static int open_beneath_cached(int dirfd, const char *path, int flags, bool beneath,
			       bool no_symlinks)
{
#if defined(SYS_openat2) && defined(RESOLVE_CACHED)
	struct open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC),
		.resolve = RESOLVE_CACHED | RESOLVE_NO_MAGICLINKS |
			   (beneath ? RESOLVE_BENEATH : 0) | (no_symlinks ? RESOLVE_NO_SYMLINKS : 0),
	};
	long fd = syscall(SYS_openat2, dirfd, path, &how, sizeof how);
	if (fd >= 0)
		return (int)fd;
	if (errno == ENOSYS || errno == EINVAL) /* older kernels */
		errno = EAGAIN;
	return -1;
#else
	errno = EAGAIN;
	return -1;
#endif
}

int maildir_openat_cached(int maildir_fd, const char *path, int flags)
{
	return open_beneath_cached(maildir_fd, path, flags, true, true);
}

static int dir_status(int err)
{
	switch (err) {
	case ENOENT:
	case ENOTDIR:
	case ELOOP:
	case EXDEV:
	case EACCES:
	case EPERM:
		return DB_PERMFAIL;
	default:
		return DB_TEMPFAIL;
	}
}

static const char *dir_reason(int err)
{
	switch (err) {
	case ENOENT:
		return "does not exist";
	case EXDEV:
	case ELOOP:
		return "passes a symlink that leads outside MaildirRoot";
	default:
		return strerror(err);
	}
}

/* mkdir -p for an absolute path (no MaildirRoot: the administrator trusts
 * every directory on the way). */
static int make_parents(const char *path, char *err, size_t errlen)
{
	char *copy = xstrdup(path);
	for (char *p = copy + 1;; p++) {
		if (*p == '/' || *p == '\0') {
			char c = *p;
			*p = '\0';
			if (mkdir(copy, 0700) != 0 && errno != EEXIST) {
				snprintf(err, errlen, "creating %s: %s", copy, strerror(errno));
				free(copy);
				return DB_TEMPFAIL;
			}
			*p = c;
			if (c == '\0')
				break;
		}
	}
	free(copy);
	return DB_OK;
}

/* path below root, or NULL when it is not below root (lexically). */
static const char *below(const char *path, const char *root)
{
	size_t n = strlen(root);
	while (n > 1 && root[n - 1] == '/')
		n--;
	if (strncmp(path, root, n) != 0 || (path[n] != '/' && !(n == 1 && root[0] == '/')))
		return NULL;
	return path + n;
}

/* Walks rel below root_fd, making each missing directory (mode 0700). */
static int create_beneath(int root_fd, const char *rel, int *fd_r, char *err, size_t errlen)
{
	char *copy = xstrdup(rel);
	int parent = dup(root_fd);
	int status = DB_OK;
	if (parent < 0) {
		snprintf(err, errlen, "dup: %s", strerror(errno));
		free(copy);
		return DB_TEMPFAIL;
	}
	char *save = NULL;
	for (char *comp = strtok_r(copy, "/", &save); comp != NULL; comp = strtok_r(NULL, "/", &save)) {
		if (strcmp(comp, ".") == 0)
			continue;
		int fd = open_beneath(parent, comp, O_RDONLY | O_DIRECTORY, false);
		if (fd < 0 && errno == ENOENT) {
			if (mkdirat(parent, comp, 0700) != 0 && errno != EEXIST) {
				int e = errno;
				snprintf(err, errlen, "creating %s in the Maildir path %s: %s", comp, rel,
					 strerror(e));
				status = DB_TEMPFAIL;
				break;
			}
			(void)fsync(parent);
			fd = open_beneath(parent, comp, O_RDONLY | O_DIRECTORY, false);
		}
		if (fd < 0) {
			int e = errno;
			snprintf(err, errlen, "Maildir %s: %s: %s", rel, comp, dir_reason(e));
			status = dir_status(e);
			break;
		}
		close(parent);
		parent = fd;
	}
	free(copy);
	if (status != DB_OK) {
		close(parent);
		return status;
	}
	*fd_r = parent;
	return DB_OK;
}

/* maildir as a path relative to root (which it may name absolutely),
 * refusing one that leaves the root lexically or is the root itself.
 * resolve_root: also try root's real path (realpath reads directories). */
static int relative_to_root(const char *root, const char *maildir, bool resolve_root,
			    const char **rel_r, char *err, size_t errlen)
{
	const char *rel = maildir;
	if (maildir[0] == '/') {
		rel = below(maildir, root);
		char *real_root = rel == NULL && resolve_root ? realpath(root, NULL) : NULL;
		if (real_root != NULL) {
			rel = below(maildir, real_root);
			free(real_root);
		}
		if (rel == NULL) {
			snprintf(err, errlen, "Maildir %s is outside MaildirRoot %s", maildir, root);
			return DB_PERMFAIL;
		}
	}
	/* ".." is refused outright, even where it would stay below the root:
	 * a path in the database has no reason to contain it. */
	bool empty = true;
	for (const char *p = rel; *p != '\0';) {
		while (*p == '/')
			p++;
		size_t n = strcspn(p, "/");
		if (n == 2 && p[0] == '.' && p[1] == '.') {
			snprintf(err, errlen, "Maildir %s leaves MaildirRoot (\"..\")", maildir);
			return DB_PERMFAIL;
		}
		if (n > 0 && !(n == 1 && p[0] == '.'))
			empty = false;
		p += n;
	}
	if (empty) {
		snprintf(err, errlen, "Maildir %s is MaildirRoot itself", maildir);
		return DB_PERMFAIL;
	}
	while (*rel == '/')
		rel++;
	*rel_r = rel;
	return DB_OK;
}

int maildir_open_dir(const char *root, const char *maildir, bool create, int *fd_r, char *err,
		     size_t errlen)
{
	if (maildir == NULL || maildir[0] == '\0') {
		snprintf(err, errlen, "the user has no Maildir (user.maildir is empty)");
		return DB_PERMFAIL;
	}
	if (root == NULL || root[0] == '\0') {
		if (maildir[0] != '/') {
			snprintf(err, errlen, "Maildir \"%s\" is relative, but MaildirRoot is not set",
				 maildir);
			return DB_PERMFAIL;
		}
		int fd = open(maildir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0 && errno == ENOENT && create) {
			int status = make_parents(maildir, err, errlen);
			if (status != DB_OK)
				return status;
			fd = open(maildir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		}
		if (fd < 0) {
			int e = errno;
			snprintf(err, errlen, "Maildir %s: %s", maildir, dir_reason(e));
			return dir_status(e);
		}
		*fd_r = fd;
		return DB_OK;
	}

	const char *rel;
	int status = relative_to_root(root, maildir, true, &rel, err, errlen);
	if (status != DB_OK)
		return status;

	int root_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (root_fd < 0) {
		int e = errno;
		snprintf(err, errlen, "MaildirRoot %s: %s", root, strerror(e));
		return dir_status(e);
	}
	int fd = open_beneath(root_fd, rel, O_RDONLY | O_DIRECTORY, false);
	if (fd < 0 && errno == ENOENT && create) {
		status = create_beneath(root_fd, rel, &fd, err, errlen);
	} else if (fd < 0) {
		int e = errno;
		snprintf(err, errlen, "Maildir %s (below MaildirRoot %s): %s", maildir, root,
			 dir_reason(e));
		status = dir_status(e);
	}
	close(root_fd);
	if (status == DB_OK)
		*fd_r = fd;
	return status;
}

int maildir_open_dir_cached(const char *root, const char *maildir, int *fd_r)
{
	char err[8]; /* the reason is not kept: the worker's attempt gives it */
	if (maildir == NULL || maildir[0] == '\0')
		return DB_AGAIN;
	int fd;
	if (root == NULL || root[0] == '\0') {
		if (maildir[0] != '/')
			return DB_AGAIN;
		fd = open_beneath_cached(AT_FDCWD, maildir, O_RDONLY | O_DIRECTORY, false, false);
	} else {
		const char *rel;
		if (relative_to_root(root, maildir, false, &rel, err, sizeof err) != DB_OK)
			return DB_AGAIN;
		int root_fd = open_beneath_cached(AT_FDCWD, root, O_RDONLY | O_DIRECTORY, false,
						  false);
		if (root_fd < 0)
			return DB_AGAIN;
		fd = open_beneath_cached(root_fd, rel, O_RDONLY | O_DIRECTORY, true, false);
		close(root_fd);
	}
	if (fd < 0)
		return DB_AGAIN;
	*fd_r = fd;
	return DB_OK;
}

int maildir_open_subdirs(int maildir_fd, bool create, int fds_r[3], char *err, size_t errlen)
{
	bool made = false;
	for (int i = 0; i < 3; i++)
		fds_r[i] = -1;
	for (int i = 0; i < 3; i++) {
		int fd = open_beneath(maildir_fd, subdir_names[i], O_RDONLY | O_DIRECTORY, true);
		if (fd < 0 && errno == ENOENT && create) {
			if (mkdirat(maildir_fd, subdir_names[i], 0700) != 0 && errno != EEXIST) {
				int e = errno;
				snprintf(err, errlen, "creating %s/ in the Maildir: %s", subdir_names[i],
					 strerror(e));
				goto fail;
			}
			made = true;
			fd = open_beneath(maildir_fd, subdir_names[i], O_RDONLY | O_DIRECTORY, true);
		}
		if (fd < 0) {
			int e = errno;
			snprintf(err, errlen, "the Maildir's %s/: %s", subdir_names[i],
				 e == ELOOP || e == EXDEV ? "is a symlink" : dir_reason(e));
			for (int j = 0; j < i; j++)
				close(fds_r[j]);
			return dir_status(e);
		}
		fds_r[i] = fd;
	}
	if (made && fsync(maildir_fd) != 0) {
		snprintf(err, errlen, "fsync of the Maildir: %s", strerror(errno));
		goto fail;
	}
	return DB_OK;
fail:
	for (int j = 0; j < 3; j++)
		if (fds_r[j] >= 0)
			close(fds_r[j]);
	return DB_TEMPFAIL;
}

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

static int write_all(int fd, const char *data, size_t len)
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
		/* ENOSPC, EDQUOT, EFBIG and EIO show here, at the latest at
		 * close (NFS reports write errors there) */
		const char *failed = NULL;
		if (write_all(fd, msg, len) != 0)
			failed = "writing";
		else if (fsync(fd) != 0)
			failed = "fsync of";
		int e = errno;
		if (close(fd) != 0 && failed == NULL) {
			failed = "closing";
			e = errno;
		}
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

int maildir_list(int dir_fd, const char *what,
		 void (*each)(const char *name, int dir_fd, void *ctx), void *ctx, char *err,
		 size_t errlen)
{
	int fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (d == NULL) {
		snprintf(err, errlen, "reading %s/: %s", what, strerror(errno));
		if (fd >= 0)
			close(fd);
		return DB_TEMPFAIL;
	}
	struct dirent *e;
	errno = 0;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if (e->d_type == DT_UNKNOWN) {
			struct stat st;
			if (fstatat(dir_fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
			    !S_ISREG(st.st_mode))
				continue;
		} else if (e->d_type != DT_REG) {
			continue;
		}
		each(e->d_name, dir_fd, ctx);
		errno = 0;
	}
	int status = DB_OK;
	if (errno != 0) {
		snprintf(err, errlen, "reading %s/: %s", what, strerror(errno));
		status = DB_TEMPFAIL;
	}
	closedir(d);
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
		int fd = open_beneath(maildir_fd, subdir_names[i], O_RDONLY | O_DIRECTORY, true);
		if (fd < 0) {
			snprintf(err, errlen, "the Maildir's %s/: %s", subdir_names[i],
				 strerror(errno));
			status = DB_TEMPFAIL;
			break;
		}
		status = maildir_list(fd, subdir_names[i], add_usage, &u, err, errlen);
		close(fd);
	}
	if (u.cache_loaded)
		maildir_size_cache_free(&u.cache);
	*bytes_r = u.bytes;
	return status;
}

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

void maildir_size_cache_load(int maildir_fd, struct maildir_size_cache *cache)
{
	*cache = (struct maildir_size_cache){0};
	int fd = openat(maildir_fd, MAILDIR_SIZE_CACHE, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
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
	int tmp_fd = open_beneath(maildir_fd, "tmp", O_RDONLY | O_DIRECTORY, true);
	char name[300];
	char unique[256];
	maildir_unique_name(unique, sizeof unique);
	snprintf(name, sizeof name, "%s.%s", final, unique);
	int fd = tmp_fd < 0 ? -1
			    : openat(tmp_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
				     0600);
	if (fd < 0) {
		snprintf(err, errlen, "creating tmp/%s: %s", name, strerror(errno));
	} else if (write_all(fd, data, len) != 0) {
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
		if (fstatat(maildir_fd, subdir_names[i + 1], &st, AT_SYMLINK_NOFOLLOW) != 0 ||
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

bool maildir_index_load(int maildir_fd, const struct maildir_dir_stamp stamps[2],
			struct maildir_index *idx)
{
	*idx = (struct maildir_index){0};
	int fd = openat(maildir_fd, MAILDIR_INDEX, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
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
