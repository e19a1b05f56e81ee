/* Maildir paths: finding a user's Maildir below MaildirRoot without
 * leaving it, opening files inside it, and listing its directories (see
 * maildir.h). */
#include "maildir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "db.h"
#include "xalloc.h"

const char *const maildir_subdir_names[3] = {"tmp", "new", "cur"};

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

int maildir_open_message(int maildir_fd, const char *path, bool cached, bool *irregular_r)
{
	/* O_NONBLOCK: opening a FIFO for reading would wait for a writer
	 * (forever, on the thread that does it); O_NOCTTY: a terminal device
	 * must not become anything's controlling terminal. A socket fails
	 * with ENXIO. */
	int flags = O_RDONLY | O_NONBLOCK | O_NOCTTY;
	*irregular_r = false;
	int fd = cached ? open_beneath_cached(maildir_fd, path, flags, true, true)
			: open_beneath(maildir_fd, path, flags, true);
	if (fd < 0) {
		if (errno == ENXIO) /* a socket (or a device without its driver) */
			*irregular_r = true;
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) != 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		*irregular_r = true;
		errno = EINVAL;
		return -1;
	}
	return fd;
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
		int fd = open_beneath(maildir_fd, maildir_subdir_names[i], O_RDONLY | O_DIRECTORY, true);
		if (fd < 0 && errno == ENOENT && create) {
			if (mkdirat(maildir_fd, maildir_subdir_names[i], 0700) != 0 && errno != EEXIST) {
				int e = errno;
				snprintf(err, errlen, "creating %s/ in the Maildir: %s", maildir_subdir_names[i],
					 strerror(e));
				goto fail;
			}
			made = true;
			fd = open_beneath(maildir_fd, maildir_subdir_names[i], O_RDONLY | O_DIRECTORY, true);
		}
		if (fd < 0) {
			int e = errno;
			snprintf(err, errlen, "the Maildir's %s/: %s", maildir_subdir_names[i],
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

/* ---- a new user's Maildir, made at the first login ---- */

/* The Maildir's path split into the directory above it (relative to
 * root, or absolute without one; "" for root itself) and its own name,
 * both in *buf_r (malloc'd). false when there is no name to make ("a/.",
 * a path maildir_open_dir refuses): its error then stands. */
static bool split_maildir_path(const char *root, const char *maildir, char **buf_r,
			       const char **parent_r, const char **name_r)
{
	const char *path = maildir;
	char ignored[8];
	if (root != NULL && root[0] != '\0') {
		if (relative_to_root(root, maildir, true, &path, ignored, sizeof ignored) != DB_OK)
			return false;
	} else if (maildir[0] != '/') {
		return false;
	}
	char *buf = xstrdup(path);
	size_t n = strlen(buf);
	while (n > 1 && buf[n - 1] == '/')
		buf[--n] = '\0';
	char *slash = strrchr(buf, '/');
	const char *name = slash != NULL ? slash + 1 : buf;
	if (name[0] == '\0' || strcmp(name, ".") == 0) {
		free(buf);
		return false;
	}
	if (slash == NULL)
		*parent_r = "";
	else if (slash == buf) /* "/name" */
		*parent_r = "/";
	else {
		*slash = '\0';
		*parent_r = buf;
	}
	*name_r = name;
	*buf_r = buf;
	return true;
}

/* The directory above the Maildir, reached as maildir_open_dir would
 * reach the Maildir (beneath root when there is one); -1 with errno. */
static int open_dir_above(const char *root, const char *parent)
{
	if (root == NULL || root[0] == '\0')
		return open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int root_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (root_fd < 0 || parent[0] == '\0')
		return root_fd;
	int fd = open_beneath(root_fd, parent, O_RDONLY | O_DIRECTORY, false);
	int e = errno;
	close(root_fd);
	errno = e;
	return fd;
}

/* Makes the Maildir's own directory when it is missing and the directory
 * above it exists. DB_OK when made (or made meanwhile by a delivery);
 * DB_NOT_FOUND when there is nothing to make here (the path exists as
 * something maildir_open_dir refused, or names nothing makeable);
 * DB_PERMFAIL with err when the directory above is missing too;
 * DB_TEMPFAIL with err when mkdir fails. */
static int make_maildir_itself(const char *root, const char *maildir, char *err, size_t errlen)
{
	char *buf;
	const char *parent, *name;
	if (!split_maildir_path(root, maildir, &buf, &parent, &name))
		return DB_NOT_FOUND;
	int parent_fd = open_dir_above(root, parent);
	if (parent_fd < 0) {
		int e = errno;
		free(buf);
		if (e != ENOENT)
			return DB_NOT_FOUND; /* maildir_open_dir's reason says it */
		snprintf(err, errlen,
			 "Maildir %s does not exist, and neither does the directory it would be "
			 "made in; tpops makes only the Maildir itself: check the path, or make "
			 "the directories above it",
			 maildir);
		return DB_PERMFAIL;
	}
	struct stat st;
	int status = DB_NOT_FOUND;
	if (fstatat(parent_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 && errno == ENOENT) {
		if (mkdirat(parent_fd, name, 0700) == 0) {
			(void)fsync(parent_fd);
			status = DB_OK;
		} else if (errno == EEXIST) {
			status = DB_OK; /* a delivery made it meanwhile */
		} else {
			snprintf(err, errlen, "making the Maildir %s: %s", maildir, strerror(errno));
			status = DB_TEMPFAIL;
		}
	}
	free(buf);
	close(parent_fd);
	return status;
}

int maildir_open_or_make(const char *root, const char *maildir, int *fd_r, bool *made_r,
			 char *err, size_t errlen)
{
	*made_r = false;
	int status = maildir_open_dir(root, maildir, false, fd_r, err, errlen);
	if (status != DB_PERMFAIL || maildir == NULL || maildir[0] == '\0')
		return status;
	char made_err[512];
	int made = make_maildir_itself(root, maildir, made_err, sizeof made_err);
	if (made == DB_NOT_FOUND)
		return status; /* the first reason stands */
	if (made != DB_OK) {
		snprintf(err, errlen, "%s", made_err);
		return made;
	}
	status = maildir_open_dir(root, maildir, false, fd_r, err, errlen);
	if (status != DB_OK)
		return status;
	int subdirs[3];
	status = maildir_open_subdirs(*fd_r, true, subdirs, err, errlen);
	if (status != DB_OK) {
		close(*fd_r);
		return status;
	}
	for (int i = 0; i < 3; i++)
		close(subdirs[i]);
	*made_r = true;
	return DB_OK;
}
