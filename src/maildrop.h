/* A user's maildrop: list, read as a stream, commit deletions, deliver.
 * Implementations: maildrop_sql.c (the `msg` table of the database) and,
 * with `Mailbox: Maildir`, maildrop_maildir.c (a Maildir on disk). Every call but read_nowait
 * may block and runs on a storage worker (or in a tool), with that thread's database. */
#ifndef TPOPS_MAILDROP_H
#define TPOPS_MAILDROP_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "db.h"
#include "tpops_limits.h"

struct maildrop_msg {
	uint64_t size;     /* octets POP3 sends: CRLF line ends, no dot-stuffing */
	uint64_t raw_size; /* octets stored */
	int64_t id;        /* SQL: msg.id */
	char *name;        /* Maildir: file name below the maildrop, else NULL */
	char uidl[POP3_MAX_UIDL + 1];
	bool imported_uidl; /* uidl came from another server (tpops-import) */
};

struct maildrop {
	const struct maildrop_ops *ops;
	int64_t uid;
	struct maildrop_msg *msgs; /* arrival order; numbers are index + 1 */
	size_t count;
};

/* One message being read (a RETR, a TOP, a read-ahead): what reading it
 * needs, copied out of the maildrop when the read starts, never pointing
 * into it. It belongs to whoever reads at the time: the stream on its I/O
 * thread, or the piece job it is handed to on a worker, and back with the
 * job's finish. So a worker never reaches into the maildrop, which the
 * session goes on using meanwhile (LIST, DELE, another read-ahead) and
 * hands to the QUIT commit. Backends extend it (first member). */
struct maildrop_reader {
	const struct maildrop_ops *ops;
	size_t index; /* the message, in the maildrop it came from */
};

/* Status values are those of enum db_status; DB_PERMFAIL for a maildrop
 * that must not be served (-ERR [SYS/PERM]). */
struct maildrop_ops {
	const char *name;
	int (*open)(struct db *db, const struct config *cfg, const struct user *u,
		    struct maildrop **md_r, char *err, size_t errlen);
	/* On the session's thread, without blocking: a reader of message
	 * `index` (which the reader keeps whatever happens to md). */
	struct maildrop_reader *(*reader_new)(const struct maildrop *md, size_t index);
	/* Reads len stored octets of the reader's message from offset, fewer
	 * only when the message ends first (so a short read is the last one;
	 * *got_r 0: offset is at the end). DB_NOT_FOUND when the message
	 * vanished. Touches the reader only. */
	int (*read)(struct maildrop_reader *r, struct db *db, uint64_t offset, void *buf,
		    size_t len, size_t *got_r, char *err, size_t errlen);
	/* Optional, the one call that runs on an I/O thread: read as above,
	 * but only what is already in memory (the page cache), never waiting
	 * for the disk. DB_AGAIN when it would wait, and for every error (the
	 * caller then runs read on a worker, which reports it); nothing is
	 * consumed then. NULL where every read may block (SQL). */
	int (*read_nowait)(struct maildrop_reader *r, uint64_t offset, void *buf, size_t len,
			   size_t *got_r);
	/* Optional (Maildir), on a worker right after a read: a new descriptor
	 * (close-on-exec, the caller's to close) of the file that read came
	 * from, holding the stored octets at the offsets read, so that they
	 * can be sent straight from it (SSL_sendfile); -1 when there is none.
	 * Touches the reader only. NULL where octets live in a database. */
	int (*file_dup)(struct maildrop_reader *r);
	/* On the session's thread: frees r; with md (the maildrop r was made
	 * from, while the session holds it), what the read learned is kept
	 * there first (a Maildir message found under a new name). */
	void (*reader_free)(struct maildrop *md, struct maildrop_reader *r);
	/* At QUIT: removes deleted[i] messages (all or nothing for SQL) while
	 * owner holds the lock; retrieved[i] may mark messages as seen. */
	int (*commit)(struct maildrop *md, struct db *db, const char *owner, const bool *deleted,
		      const bool *retrieved, char *err, size_t errlen);
	void (*free)(struct maildrop *md);
	/* Delivery (deliver.c): stores one whole message durably, or nothing. */
	int (*deliver)(struct db *db, const struct config *cfg, const struct user *u,
		       const char *msg, size_t len, char *err, size_t errlen);
	/* Delivery: the octets stored for u now, as its quota counts them. */
	int (*usage)(struct db *db, const struct config *cfg, const struct user *u,
		     uint64_t *bytes_r, char *err, size_t errlen);
};

const struct maildrop_ops *maildrop_backend(const struct config *cfg);

extern const struct maildrop_ops maildrop_sql_ops;
extern const struct maildrop_ops maildrop_maildir_ops; /* maildrop_maildir.c */

/* Gives every message whose own UIDL equals an imported UIDL of the same
 * maildrop another one (imported_uidl_avoid), so that imported and new
 * UIDLs never collide. */
void maildrop_keep_uidls_apart(struct maildrop *md);

/* Maildir: the imported UIDLs of an open Maildir (tpops-uidls) applied to
 * a listing (msgs[i].name "new/FILE" or "cur/FILE"): their messages get
 * them and come first, in the order they were imported. A file that
 * cannot be read or is damaged is logged (path names the Maildir). */
void maildrop_maildir_imported(struct maildrop *md, int maildir_fd, const char *path);

/* Where the header ends: the length of the header including the empty line
 * that ends it, or len when there is none. */
size_t message_header_length(const char *msg, size_t len);

#endif
