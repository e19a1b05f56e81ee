/* tpops-store: deliver a message to a tpops user; Postfix's pipe transport.
 *
 * Exit status (sysexits, what Postfix acts on): 0 stored, 64 usage,
 * 67 unknown address (bounce "user unknown"), 73 over quota (bounce, as
 * the original did), 75 temporary failure (Postfix retries later),
 * 78 configuration error. A message is stored whole, durably, or not at
 * all: the exit status is 0 only after the commit.
 *
 * Postfix's pipe(8) bounces on 74 (EX_IOERR, 5.3.0) and 78 (EX_CONFIG,
 * 5.3.5): an unreadable tpops.conf or a rejected database login would
 * return every message to its sender. Command output that starts with an
 * RFC 3463 status code takes precedence over the exit status, so the
 * diagnostics of those two exits start with "4.3.0 " and "4.3.5 ": Postfix
 * defers, and delivers once the installation is fixed. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "maildrop.h"
#include "privsep.h"
#include "tool_common.h"
#include "xalloc.h"

static const char usage_text[] = "usage: tpops-store [-c FILE] MAIL [FILE...]\n"
				 "  stores each FILE, or standard input, for the user with address MAIL\n";

/* What Postfix reads at the start of the output of a run that exits 78 or
 * 74 (see above): the message is deferred, not bounced. */
#define DSN_CONFIG "4.3.5 "
#define DSN_IOERR "4.3.0 "

/* tool_open, with the configuration errors marked DSN_CONFIG. */
static struct db *store_open(const char *config_path, struct config *cfg)
{
	char err[1024];
	if (config_load(cfg, config_path, err, sizeof err) != 0 ||
	    privsep_drop(cfg->user, cfg->group, err, sizeof err) != 0) {
		fprintf(stderr, DSN_CONFIG "tpops-store: %s\n", err);
		exit(EX_CONFIG);
	}
	struct db *db = NULL;
	int status = db_open(cfg, &db, err, sizeof err);
	if (status != DB_OK) {
		fprintf(stderr, "%stpops-store: %s\n", status == DB_PERMFAIL ? DSN_CONFIG : "",
			err);
		exit(status == DB_PERMFAIL ? EX_CONFIG : EX_TEMPFAIL);
	}
	return db;
}

/* Reads a whole stream; -1 with errno on a read error. */
static int read_all(FILE *in, struct buf *msg)
{
	char chunk[65536];
	size_t n;
	while ((n = fread(chunk, 1, sizeof chunk, in)) > 0)
		buf_append(msg, chunk, n);
	return ferror(in) ? -1 : 0;
}

/* Delivery failures that a retry cannot fix bounce; all others wait. */
static int delivery_status(int db_status)
{
	switch (db_status) {
	case DB_OK:
		return EX_OK;
	case DB_QUOTA:
		return EX_CANTCREAT;
	case DB_NOT_FOUND:
		return EX_NOUSER;
	default:
		return EX_TEMPFAIL;
	}
}

static int deliver_one(struct db *db, const struct config *cfg, const struct user *u,
		       const char *name, FILE *in)
{
	struct buf msg = BUF_INIT;
	if (read_all(in, &msg) != 0) {
		fprintf(stderr, DSN_IOERR "tpops-store: reading %s: %s\n", name, strerror(errno));
		buf_free(&msg);
		return EX_IOERR;
	}
	char err[512] = "";
	const struct maildrop_ops *md = maildrop_backend(cfg);
	int status = md->deliver(db, cfg, u, msg.data ? msg.data : "", msg.len, err, sizeof err);
	if (status != DB_OK)
		fprintf(stderr, "tpops-store: %s: %s\n", u->mail, err);
	buf_free(&msg);
	return delivery_status(status);
}

int main(int argc, char **argv)
{
	const char *config_path = DEFAULT_CONFIG_PATH;
	int first = tool_simple_options(argc, argv, "tpops-store", usage_text, 1, argc, &config_path);
	const char *mail = argv[first];
	struct config cfg;
	struct db *db = store_open(config_path, &cfg);
	if (maildrop_backend(&cfg) == NULL) {
		fprintf(stderr,
			DSN_CONFIG "tpops-store: %s: Mailbox: this build cannot deliver there\n",
			cfg.path);
		tool_close(db, &cfg);
		return EX_CONFIG;
	}
	struct user u = {0};
	int status = db->ops->user_by_mail(db, mail, &u);
	if (status != DB_OK) {
		if (status == DB_NOT_FOUND)
			fprintf(stderr, "tpops-store: %s: user unknown\n", mail);
		else
			fprintf(stderr, "tpops-store: %s: %s\n", mail, db_error(db));
		tool_close(db, &cfg);
		return status == DB_NOT_FOUND ? EX_NOUSER : EX_TEMPFAIL;
	}
	int exit_status = EX_OK;
	if (argc - first == 1) {
		exit_status = deliver_one(db, &cfg, &u, "standard input", stdin);
	} else {
		/* one message per file; the first failure decides the status,
		 * the files after it are still tried */
		for (int i = first + 1; i < argc; i++) {
			FILE *f = fopen(argv[i], "rb");
			int rc;
			if (f == NULL) {
				fprintf(stderr, "tpops-store: %s: %s\n", argv[i], strerror(errno));
				rc = EX_NOINPUT;
			} else {
				rc = deliver_one(db, &cfg, &u, argv[i], f);
				fclose(f);
			}
			if (exit_status == EX_OK)
				exit_status = rc;
		}
	}
	user_clear(&u);
	tool_close(db, &cfg);
	return exit_status;
}
