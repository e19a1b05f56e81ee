/* Maildir on disk: finding a user's Maildir safely (maildir_path.c), unique
 * names and delivery (tmp/ -> fsync -> new/, maildir_deliver.c), the size
 * fields of names, and the size and listing caches (maildir_cache.c).
 * Shared by the Maildir maildrop (maildrop_maildir.c, in the daemon) and
 * tpops-store (through maildrop_maildir_ops.deliver). Every call may block.
 *
 * Names. A file delivered by tpops is called
 *     <seconds>.M<microseconds>P<pid>Q<counter>.<host>,S=<stored>,W=<wire>
 * (the Maildir convention, as Postfix and Dovecot write it; <host> has '/',
 * ':', ',', '\\' and anything outside 0x21-0x7E written as \ooo octal).
 * S= is the stored size, W= the size as POP3 sends it (CRLF line ends).
 * Files in cur/ add ":2,<flags>". The part before ':' is the base name: it
 * never changes once the message is delivered, and tpops keys everything
 * (UIDL, size cache) on it. */
#ifndef TPOPS_MAILDIR_H
#define TPOPS_MAILDIR_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "tpops_limits.h"

/* tmp, new and cur, in the order of maildir_open_subdirs. */
extern const char *const maildir_subdir_names[3];

/* write() until all of data is written; -1 with errno. */
int maildir_write_all(int fd, const char *data, size_t len);

/* Writes all of data to a new file, fsyncs and closes it (the fd is
 * closed in every case): NULL when all went well, else the step that
 * failed ("writing", "fsync of", "closing") for an error message, with
 * its errno in *errno_r. ENOSPC, EDQUOT, EFBIG and EIO show here, at the
 * latest at close (NFS reports write errors there). */
const char *maildir_write_sync_close(int fd, const char *data, size_t len, int *errno_r);

/* The per-maildrop size cache, in the Maildir's top directory. */
#define MAILDIR_SIZE_CACHE "tpops-sizes"

/* Opens the directory of a user's Maildir (user.maildir) as *fd_r.
 * With root (MaildirRoot) set, maildir is relative to it or an absolute
 * path below it, and must not leave it: a ".." component or a symlink that
 * resolves outside the root is refused (the kernel resolves beneath the
 * root's descriptor, so a symlink swapped in meanwhile is refused too).
 * Without root, maildir must be absolute. With create, missing directories
 * (the Maildir and its tmp/ new/ cur/) are made with mode 0700, as Postfix
 * does at the first delivery.
 * DB_PERMFAIL: refused, or missing without create (reason in err);
 * DB_TEMPFAIL: an I/O error that may pass. */
int maildir_open_dir(const char *root, const char *maildir, bool create, int *fd_r, char *err,
		     size_t errlen);

/* maildir_open_dir for a login: when the Maildir itself is missing but
 * the directory it would be in exists, it is made (mode 0700, with tmp/
 * new/ cur/) and opened, empty: a new user's mailbox before its first
 * delivery (*made_r true). Directories above it are never made: a missing
 * one (a volume not mounted, a wrong path) stays an error that says so. */
int maildir_open_or_make(const char *root, const char *maildir, int *fd_r, bool *made_r,
			 char *err, size_t errlen);

/* maildir_open_dir without create, for an I/O thread: only from the
 * kernel's lookup caches, never waiting for the disk. DB_AGAIN when that is
 * not enough, and on any error: maildir_open_dir on a worker then does it,
 * or says what is wrong. */
int maildir_open_dir_cached(const char *root, const char *maildir, int *fd_r);

/* Opens tmp/, new/ and cur/ of an open Maildir (no symlinks), making the
 * missing ones with create. fds_r[0..2] = tmp, new, cur. */
int maildir_open_subdirs(int maildir_fd, bool create, int fds_r[3], char *err, size_t errlen);

/* Opens path (such as "new/NAME") relative to an open Maildir, following
 * no symlink and never leaving it; -1 with errno. */
int maildir_openat(int maildir_fd, const char *path, int flags);
/* The same from the kernel's lookup caches only: -1 with EAGAIN when the
 * lookup would wait for the disk (see maildir_open_dir_cached). */
int maildir_openat_cached(int maildir_fd, const char *path, int flags);

/* Opens a message file (path such as "new/NAME") for reading, as
 * maildir_openat (cached: as maildir_openat_cached), without ever waiting:
 * a FIFO, directory, socket or device swapped in for a message is refused
 * with *irregular_r set, never opened for reading nor waited on. -1 with
 * errno on failure. */
int maildir_open_message(int maildir_fd, const char *path, bool cached, bool *irregular_r);

/* Calls each(name, dir_fd, ctx) for every regular file of an open
 * directory (new/ or cur/) whose name does not start with '.'; files are
 * stat'ed only where the filesystem does not report their type. */
int maildir_list(int dir_fd, const char *what,
		 void (*each)(const char *name, int dir_fd, void *ctx), void *ctx, char *err,
		 size_t errlen);

/* A new unique name (without size fields or info) into buf. */
void maildir_unique_name(char *buf, size_t size);

/* Length of the base name: the octets before the first ':'. */
size_t maildir_base_length(const char *name);

/* The value of the ",<field>=<digits>" size field in the base name. */
bool maildir_size_field(const char *name, size_t base_len, char field, uint64_t *value_r);

/* The UIDL of a base name: the name itself when it is 1-70 octets of
 * 0x21-0x7E (RFC 1939), else "X" and the SHA-256 of it in hex, which is
 * stable and valid. */
void maildir_uidl(const char *base, size_t base_len, char out[POP3_MAX_UIDL + 1]);

/* Writes msg durably into the Maildir: tmp/<unique>,S=,W= created with
 * O_EXCL and mode 0600, written, fsync'd and closed, renamed into new/
 * (never replacing a file), and new/ fsync'd. On any failure nothing is
 * left in tmp/ or new/ and DB_TEMPFAIL is returned. With quota > 0, the
 * stored sizes of the messages in new/ and cur/ plus this one must not
 * exceed it (DB_QUOTA). The final name goes to name_r when not NULL. */
int maildir_deliver(int maildir_fd, const char *msg, size_t len, uint64_t wire_size,
		    int64_t quota, char *name_r, size_t name_size, char *err, size_t errlen);

/* Sum of the stored sizes of the messages in new/ and cur/: from S= in the
 * names, else from the size cache, else from the file's metadata. */
int maildir_usage(int maildir_fd, uint64_t *bytes_r, char *err, size_t errlen);

/* ---- the size cache ----
 * One line per message whose name has no W= field, keyed by base name:
 *     tpops-sizes 1
 *     <wire size> <stored size> <base name>
 *     ...
 *     end <number of entries>
 * A file without the end line (cut short) is ignored as a whole. It is
 * written to tmp/ and renamed over the old one, so a reader sees one
 * version or the other. */
struct maildir_size_entry {
	const char *base; /* not NUL-terminated in general */
	size_t base_len;
	uint64_t wire_size, raw_size;
	bool used; /* found a listed file this time */
};

struct maildir_size_cache {
	char *text; /* the file's contents; entries point into it */
	struct maildir_size_entry *entries;
	size_t count;
	size_t *table; /* open addressing: index + 1, 0 = empty */
	size_t table_size;
};

/* Loads the cache of an open Maildir; a missing or damaged cache loads as
 * empty. Never fails. */
void maildir_size_cache_load(int maildir_fd, struct maildir_size_cache *cache);
/* Parses the text of a cache file; the cache takes text (malloc'd) over.
 * False, with an empty cache, when the text is not a whole cache. */
bool maildir_size_cache_parse(struct maildir_size_cache *cache, char *text, size_t len);
struct maildir_size_entry *maildir_size_cache_find(struct maildir_size_cache *cache,
						   const char *base, size_t base_len);
void maildir_size_cache_free(struct maildir_size_cache *cache);

/* Replaces the cache with the given entries (tmp/ then rename). */
int maildir_size_cache_save(int maildir_fd, const struct maildir_size_entry *entries,
			    size_t count, char *err, size_t errlen);

/* ---- the listing cache ----
 * The whole listing of a login (names in arrival order, as "new/FILE" or
 * "cur/FILE", with their sizes), kept with the state of new/ and cur/ it
 * was read from, so that a login that finds both directories unchanged
 * serves it without reading them (no getdents, no sort, no size cache).
 * A binary file for this host only (native byte order), read with one
 * read() into one buffer that the names point into:
 *     header (struct maildir_index_header), count entries
 *     (struct maildir_index_entry), then the names, each NUL-terminated.
 * It is believed only as a whole: magic, version, lengths, every name and
 * a checksum over the file must be right, and the stamps of new/ and cur/
 * (device, inode, size, mtime and ctime with nanoseconds) must equal the
 * directories' now. A directory changed within MAILDIR_INDEX_MARGIN of the
 * listing is not trusted (a change in the same timestamp tick would leave
 * its mtime as it was): no cache is written then, and the next login lists
 * the directories again. Written to tmp/ and renamed over the old one. */
#define MAILDIR_INDEX "tpops-index"
#define MAILDIR_INDEX_MARGIN_NS 1000000000ll /* 1 s */

struct maildir_dir_stamp {
	uint64_t dev, ino, size;
	int64_t mtime_sec, mtime_nsec, ctime_sec, ctime_nsec;
};

struct maildir_index_header {
	char magic[8];        /* "tpopsidx" */
	uint32_t version;     /* MAILDIR_INDEX_VERSION */
	uint32_t header_size; /* sizeof (struct maildir_index_header) */
	uint32_t entry_size;  /* sizeof (struct maildir_index_entry) */
	uint32_t reserved;
	uint64_t count, from_name, names_len;
	struct maildir_dir_stamp dirs[2]; /* new/, cur/ */
	int64_t listed_sec, listed_nsec;  /* when they were stat'ed, before reading */
	uint64_t checksum;                /* over the whole file, this field as 0 */
};

struct maildir_index_entry {
	uint64_t size, raw_size;
	uint32_t name_off;  /* into the names */
	uint16_t name_len;  /* "new/FILE" without the NUL */
	uint16_t base_len;  /* of FILE: the octets before ':' */
};

struct maildir_index {
	char *buf; /* the whole file (malloc'd); entries and names point into it */
	size_t len;
	const struct maildir_index_entry *entries;
	const char *names;
	size_t count, from_name;
};

/* The stamp of an open directory (fstat); false with errno. */
bool maildir_dir_stamp(int dir_fd, struct maildir_dir_stamp *stamp);
/* The stamps of new/ and cur/ of an open Maildir (no symlink followed);
 * false when one is missing or not a directory. */
bool maildir_dir_stamps(int maildir_fd, struct maildir_dir_stamp stamps[2]);
/* Whether a listing of directories with these stamps, started at listed,
 * may be cached: each mtime at least MAILDIR_INDEX_MARGIN_NS before it. */
bool maildir_index_trustworthy(const struct maildir_dir_stamp stamps[2],
			       const struct timespec *listed);
/* Loads the listing cache when it is whole and was made from directories
 * with exactly these stamps; false (and an empty index) otherwise. */
bool maildir_index_load(int maildir_fd, const struct maildir_dir_stamp stamps[2],
			struct maildir_index *idx);
/* Checks and takes over (on success) the text of a cache file. */
bool maildir_index_parse(struct maildir_index *idx, char *buf, size_t len,
			 const struct maildir_dir_stamp stamps[2]);
void maildir_index_free(struct maildir_index *idx);

struct maildir_index_item {
	const char *name; /* "new/FILE" or "cur/FILE" */
	uint64_t size, raw_size;
};
/* Replaces the listing cache (tmp/ then rename). DB_PERMFAIL (nothing
 * written) for a name that cannot be cached; DB_TEMPFAIL for I/O errors. */
int maildir_index_save(int maildir_fd, const struct maildir_dir_stamp stamps[2],
		       const struct timespec *listed, const struct maildir_index_item *items,
		       size_t count, size_t from_name, char *err, size_t errlen);
/* Removes the listing cache (when the directories may not be cached). */
void maildir_index_remove(int maildir_fd);

#endif
