/* tpops-store: deliver a message to a tpops user; Postfix's pipe transport.
 * A thin front end to deliver.c, which the LMTP listener shares.
 *
 * Exit status (sysexits, what Postfix acts on): 0 stored, 64 usage,
 * 66 a FILE cannot be opened, 67 unknown address (bounce "user unknown"),
 * 73 over quota (bounce, as the original did), 75 temporary failure
 * (Postfix retries later), 78 configuration error. A message is stored
 * whole, durably, or not at all: the exit status is 0 only after the
 * commit.
 *
 * Postfix's pipe(8) bounces on 74 (EX_IOERR, 5.3.0) and 78 (EX_CONFIG,
 * 5.3.5): an unreadable tpops.conf or a rejected database login would
 * return every message to its sender. Command output that starts with an
 * RFC 3463 status code takes precedence over the exit status, so the
 * diagnostics of those two exits start with "4.3.0 " and "4.3.5 ": Postfix
 * defers, and delivers once the installation is fixed. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "deliver.h"
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

/* A message source, opened while still root (see main). */
struct source {
	const char *name;
	FILE *in;    /* NULL: could not be opened */
	int open_errno;
};

/* Drops root, then opens the database (never creating it: only
 * tpops-dbinit does). NULL with the exit status in *exit_r, the reason
 * printed. */
static struct db *store_open(struct config *cfg, int *exit_r)
{
	char err[1024];
	if (privsep_drop(cfg->user, cfg->group, err, sizeof err) != 0) {
		fprintf(stderr, DSN_CONFIG "tpops-store: %s\n", err);
		*exit_r = EX_CONFIG;
		return NULL;
	}
	if (maildrop_backend(cfg) == NULL) {
		fprintf(stderr, DSN_CONFIG "tpops-store: %s: Mailbox: this build cannot deliver there\n",
			cfg->path);
		*exit_r = EX_CONFIG;
		return NULL;
	}
	struct db *db = NULL;
	int status = db_open(cfg, &db, err, sizeof err);
	if (status != DB_OK) {
		fprintf(stderr, "%stpops-store: %s\n", status == DB_PERMFAIL ? DSN_CONFIG : "",
			err);
		*exit_r = status == DB_PERMFAIL ? EX_CONFIG : EX_TEMPFAIL;
		return NULL;
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

static int exit_status_of(enum deliver_result r)
{
	switch (r) {
	case DELIVER_STORED:
		return EX_OK;
	case DELIVER_UNKNOWN:
		return EX_NOUSER;
	case DELIVER_OVER_QUOTA:
		return EX_CANTCREAT;
	case DELIVER_PERMANENT:
		return EX_DATAERR;
	case DELIVER_TEMPORARY:
		break;
	}
	return EX_TEMPFAIL;
}

static int deliver_source(struct db *db, const struct config *cfg, const struct user *u,
			  struct source *src)
{
	if (src->in == NULL) {
		fprintf(stderr, "tpops-store: %s: %s\n", src->name, strerror(src->open_errno));
		return EX_NOINPUT;
	}
	struct buf msg = BUF_INIT;
	if (read_all(src->in, &msg) != 0) {
		fprintf(stderr, DSN_IOERR "tpops-store: reading %s: %s\n", src->name,
			strerror(errno));
		buf_free(&msg);
		return EX_IOERR;
	}
	char err[1024] = "";
	enum deliver_result r = deliver_store(db, cfg, u, msg.data, msg.len, err, sizeof err);
	if (r != DELIVER_STORED)
		fprintf(stderr, "tpops-store: %s\n", err);
	buf_free(&msg);
	return exit_status_of(r);
}

int main(int argc, char **argv)
{
	const char *config_path = DEFAULT_CONFIG_PATH;
	int first = tool_simple_options(argc, argv, "tpops-store", usage_text, 1, argc, &config_path);
	const char *mail = argv[first];

	/* Under a file size limit (RLIMIT_FSIZE) a write past it must fail
	 * with EFBIG, which ends in exit 75, not kill us with SIGXFSZ (exit
	 * 153, which Postfix bounces). */
	signal(SIGXFSZ, SIG_IGN);

	struct config cfg;
	char err[1024];
	if (config_load(&cfg, config_path, err, sizeof err) != 0) {
		fprintf(stderr, DSN_CONFIG "tpops-store: %s\n", err);
		config_free(&cfg);
		return EX_CONFIG;
	}

	/* The FILEs are opened with the caller's rights, before privileges
	 * are dropped: root may hand over a file only root can read. */
	int nsrc = argc - first - 1;
	struct source *srcs = xcalloc(nsrc > 0 ? (size_t)nsrc : 1, sizeof *srcs);
	if (nsrc == 0) {
		srcs[0] = (struct source){.name = "standard input", .in = stdin};
		nsrc = 1;
	} else {
		for (int i = 0; i < nsrc; i++) {
			srcs[i].name = argv[first + 1 + i];
			srcs[i].in = fopen(srcs[i].name, "rbe");
			srcs[i].open_errno = errno;
		}
	}

	int exit_status = EX_OK;
	struct db *db = store_open(&cfg, &exit_status);
	struct user u = {0};
	enum deliver_result found =
		db ? deliver_resolve(db, mail, false, &u, err, sizeof err) : DELIVER_TEMPORARY;
	if (db == NULL) {
		/* exit_status and the message are store_open's */
	} else if (found != DELIVER_STORED) {
		fprintf(stderr, "tpops-store: %s\n", err);
		exit_status = exit_status_of(found);
	} else {
		/* one message per source; the first failure decides the
		 * status, the sources after it are still tried */
		for (int i = 0; i < nsrc; i++) {
			int rc = deliver_source(db, &cfg, &u, &srcs[i]);
			if (exit_status == EX_OK)
				exit_status = rc;
		}
		user_clear(&u);
	}
	for (int i = 0; i < nsrc; i++)
		if (srcs[i].in != NULL && srcs[i].in != stdin)
			fclose(srcs[i].in);
	free(srcs);
	db_close(db);
	config_free(&cfg);
	return exit_status;
}
