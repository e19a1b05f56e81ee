/* tpops-import: what the sources (Dovecot, Courier, a live POP3 server)
 * and the targets (the SQL store, a Maildir) share. A source produces, per
 * user, the list of messages in the order its POP3 server listed them,
 * each with the UIDL that server showed; import_target.c writes them so
 * that tpops serves the same list, and a run that is interrupted leaves
 * nothing half-imported (a second run finishes the job). */
#ifndef TPOPS_IMPORT_H
#define TPOPS_IMPORT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "db.h"
#include "tpops_limits.h"

struct import_options {
	bool copy; /* Maildir: copy the files instead of adopting them */
	bool into_sql; /* the target is the SQL store */
	bool dry_run; /* write nothing; say what would be done */
	bool progress; /* a progress line on the terminal (stderr) */
	const char *maildir_template; /* dovecot: where the Maildirs are */
	const char *dest_template; /* --copy: the new Maildirs (below MaildirRoot) */
	const char *uidl_format; /* dovecot: pop3_uidl_format */
	const char *domain; /* dovecot: address domain for logins without one */
};

/* One message of a source. For a Maildir source, file is the path below the
 * Maildir ("cur/NAME:2,S") and base its base name; a POP3 source has
 * neither and gives its number on the server instead. */
struct import_msg {
	char uidl[POP3_MAX_UIDL + 1]; /* what the old server showed */
	char *file;
	char *base;
	unsigned number; /* POP3 source: message number */
	uint64_t size; /* octets as POP3 sends them, for progress */
};

struct import_list {
	struct import_msg *msgs;
	size_t count, cap;
	size_t unseen; /* Maildir sources: files the old POP3 server had not listed
			  yet */
};

struct import_msg *import_list_add(struct import_list *l);
void import_list_free(struct import_list *l);

/* Totals for the summary and the progress line. */
struct import_stats {
	size_t users, users_skipped, users_failed;
	size_t msgs_done, msgs_already, msgs_failed;
	uint64_t bytes_done, bytes_total;
	size_t msgs_total;
};

/* Reads a message's octets from a source: a Maildir file or RETR. */
struct import_reader {
	int (*read)(struct import_reader *r, const struct import_msg *m, char **data_r,
		    size_t *len_r, char *err, size_t errlen);
	int maildir_fd; /* Maildir sources: the open source Maildir */
};

/* The progress line (stderr, a terminal only) and the summary. */
void import_progress_start(struct import_stats *st, bool enabled);
void import_progress_user(const char *login, size_t msgs, uint64_t bytes);
void import_progress_step(struct import_stats *st, uint64_t bytes);
void import_progress_end(void);
void import_summary(const struct import_stats *st, bool dry_run);
/* --dry-run: one line per user, from the totals before and after it. */
void import_dry_run_user(const struct user *u, const struct import_stats *before,
			 const struct import_stats *after);

/* ---- the target ---- */

/* Makes sure the tpops user exists: with create_passwd (the stored form)
 * it is added when missing (address mail, Maildir maildir); an existing
 * user is kept as it is. u is filled. 0, or -1 with a message printed. */
int import_user(struct db *db, const struct config *cfg, const struct import_options *opt,
		const char *login, const char *create_passwd, const char *mail, const char *maildir,
		struct user *u);

/* Imports a Maildir source's messages for u (src_fd: the open source
 * Maildir). 0 when every message is in place, -1 otherwise (reported). */
int import_messages(struct db *db, const struct config *cfg, const struct import_options *opt,
		    const struct user *u, int src_fd, struct import_list *l,
		    struct import_reader *reader, struct import_stats *st);

/* The path of a Maildir as tpops.conf sees it: relative to MaildirRoot
 * when it lies below it, else as given. malloc'd. */
char *import_maildir_for_config(const struct config *cfg, const char *path);

/* Opens a source Maildir (a directory with cur/ and new/). -1 with a
 * message in err. */
int import_open_source(const char *path, char *err, size_t errlen);

/* The octets of a Maildir source's message file. */
int import_read_file(struct import_reader *r, const struct import_msg *m, char **data_r,
		     size_t *len_r, char *err, size_t errlen);

/* Lists new/ and cur/ of an open Maildir: calls each(subdir, name, ctx). */
int import_list_maildir(int fd, void (*each)(const char *subdir, const char *name, void *ctx),
			void *ctx, char *err, size_t errlen);

/* ---- the sources ---- */
int import_dovecot(int argc, char **argv, struct db *db, const struct config *cfg,
		   struct import_options *opt, struct import_stats *st);
int import_courier(int argc, char **argv, struct db *db, const struct config *cfg,
		   struct import_options *opt, struct import_stats *st);
/* --host, --port, --tls, --tls-ca of the pop3 source. */
void import_pop3_endpoint(const char *host, const char *port, bool tls, const char *ca_file);
int import_pop3(int argc, char **argv, struct db *db, const struct config *cfg,
		struct import_options *opt, struct import_stats *st);

/* Dovecot's pop3_uidl_format: expands fmt (%u %v %m %f %g, with Dovecot
 * 2.3's width, offset and X L U R M T modifiers, and %{uid} etc.) into
 * out. md5 may be NULL (Dovecot cannot give it for a Maildir). false with
 * a reason in err for a format it cannot expand. */
struct dovecot_uidl_vars {
	unsigned long uid, uidvalidity;
	const char *md5, *filename, *guid;
};
bool dovecot_uidl_expand(const char *fmt, const struct dovecot_uidl_vars *v, char *out,
			 size_t outlen, char *err, size_t errlen);

#endif
