/* tpops-import: move users and their mail from Dovecot, Courier or any
 * POP3 server into tpops, keeping every message's UIDL, so that mail
 * programs that leave mail on the server fetch nothing twice.
 *
 * Exit status: 0 everything imported; 64 usage; 65 some users or messages
 * could not be imported (named on standard error; the rest was); 66 an
 * input file is missing; 75 a temporary failure (database, network):
 * running it again finishes the job; 78 configuration error. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "import.h"
#include "tool_common.h"

static const char usage_text[] =
	"usage: tpops-import [-c FILE] dovecot [OPTIONS] PASSWD-FILE\n"
	"       tpops-import [-c FILE] courier [OPTIONS] LOGIN MAILDIR\n"
	"       tpops-import [-c FILE] pop3 --host HOST [--port PORT] [--tls] "
	"[OPTIONS]\n"
	"                    LOGIN PASSWORD [LOCAL]\n"
	"options:\n"
	"  --maildir TEMPLATE   dovecot: the Maildirs (%u %n %d %h, ~/; default "
	"~/Maildir)\n"
	"  --uidl-format FMT    dovecot: pop3_uidl_format (default %08Xu%08Xv)\n"
	"  --domain DOMAIN      dovecot: address LOGIN@DOMAIN for a login without "
	"@\n"
	"  --copy               copy Maildir files (to --dest) instead of adopting "
	"them\n"
	"  --dest TEMPLATE      --copy: the new Maildirs below MaildirRoot "
	"(default %u)\n"
	"  --into-sql           import into the SQL store (Mailbox: MySQL or "
	"SQLite)\n"
	"  --dry-run            write nothing; say what would be done\n"
	"  --tls-ca FILE        pop3 --tls: trust the CAs in FILE, not the "
	"system's\n"
	"  --quiet              no progress line\n"
	"PASSWORD \"-\" reads the password from standard input.\n";

/* ---- progress and summary ---- */

static struct {
	bool on;
	struct timespec start;
	const char *login;
	size_t user_msgs, user_done;
	uint64_t user_bytes, user_bytes_done;
	bool line_shown;
	time_t last;
	uint64_t processed; /* bytes of every message dealt with, imported or not */
} progress;

static double since_start(void)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - progress.start.tv_sec) +
	       (double)(now.tv_nsec - progress.start.tv_nsec) / 1e9;
}

static void human(char *out, size_t n, uint64_t bytes)
{
	if (bytes >= 10ull * 1024 * 1024 * 1024)
		snprintf(out, n, "%.1f GiB", (double)bytes / (1024.0 * 1024 * 1024));
	else if (bytes >= 10ull * 1024 * 1024)
		snprintf(out, n, "%.1f MiB", (double)bytes / (1024.0 * 1024));
	else if (bytes >= 10ull * 1024)
		snprintf(out, n, "%.1f KiB", (double)bytes / 1024.0);
	else
		snprintf(out, n, "%llu B", (unsigned long long)bytes);
}

void import_progress_start(struct import_stats *st, bool enabled)
{
	progress.on = enabled && isatty(STDERR_FILENO);
	clock_gettime(CLOCK_MONOTONIC, &progress.start);
}

void import_progress_user(const char *login, size_t msgs, uint64_t bytes)
{
	progress.login = login;
	progress.user_msgs = msgs;
	progress.user_bytes = bytes;
	progress.user_done = 0;
	progress.user_bytes_done = 0;
	progress.last = 0;
}

void import_progress_step(struct import_stats *st, uint64_t bytes)
{
	progress.user_done++;
	progress.user_bytes_done += bytes;
	progress.processed += bytes;
	if (!progress.on)
		return;
	time_t now = time(NULL);
	if (now == progress.last && progress.user_done != progress.user_msgs)
		return;
	progress.last = now;
	char done[32], total[32], eta[32] = "";
	human(done, sizeof done, progress.user_bytes_done);
	human(total, sizeof total, progress.user_bytes);
	/* the ETA of the whole run, from the bytes dealt with so far (what
	 * is there already goes fast, but counts) */
	uint64_t all_done = progress.processed;
	double t = since_start();
	if (all_done > 0 && st->bytes_total > all_done && t > 1) {
		double left = t * (double)(st->bytes_total - all_done) / (double)all_done;
		snprintf(eta, sizeof eta, ", ETA %d:%02d", (int)left / 60, (int)left % 60);
	}
	fprintf(stderr, "\r\033[K%s: %zu/%zu messages, %s/%s%s",
		progress.login ? progress.login : "", progress.user_done, progress.user_msgs, done,
		total, eta);
	progress.line_shown = true;
}

void import_progress_end(void)
{
	if (progress.line_shown)
		fputs("\r\033[K", stderr);
	progress.line_shown = false;
}

void import_summary(const struct import_stats *st, bool dry_run)
{
	import_progress_end();
	char bytes[32];
	human(bytes, sizeof bytes, st->bytes_done);
	double t = since_start();
	printf("tpops-import: %s%zu users, %zu messages (%s) %s, %zu already there, "
	       "%zu failed; "
	       "%zu users skipped, %zu failed; %.1f s\n",
	       dry_run ? "dry run: " : "", st->users, st->msgs_done, bytes,
	       dry_run ? "to import" : "imported", st->msgs_already, st->msgs_failed,
	       st->users_skipped, st->users_failed, t);
}

void import_dry_run_user(const struct user *u, const struct import_stats *before,
			 const struct import_stats *after)
{
	import_progress_end();
	char bytes[32];
	human(bytes, sizeof bytes, after->bytes_done - before->bytes_done);
	printf("tpops-import: dry run: %s%s: %zu messages (%s) to import, %zu "
	       "already there\n",
	       u->login, u->uid < 0 ? " (a new user)" : "", after->msgs_done - before->msgs_done,
	       bytes, after->msgs_already - before->msgs_already);
}

/* ---- main ---- */

/* What the command line says; the pop3 options are passed on to that
 * source. */
struct command_line {
	const char *config_path;
	struct import_options *opt;
	const char *host, *port, *ca_file;
	bool tls;
};

/* An option that may stand before or after the source's name: taken
 * into cl (true), or not one of those (false). */
static bool take_option(int c, struct command_line *cl)
{
	switch (c) {
	case 'c':
		cl->config_path = optarg;
		return true;
	case 'm':
		cl->opt->maildir_template = optarg;
		return true;
	case 'u':
		cl->opt->uidl_format = optarg;
		return true;
	case 'D':
		cl->opt->domain = optarg;
		return true;
	case 'C':
		cl->opt->copy = true;
		return true;
	case 'd':
		cl->opt->dest_template = optarg;
		return true;
	case 'S':
		cl->opt->into_sql = true;
		return true;
	case 'n':
		cl->opt->dry_run = true;
		return true;
	case 'q':
		cl->opt->progress = false;
		return true;
	case 'H':
		cl->host = optarg;
		return true;
	case 'P':
		cl->port = optarg;
		return true;
	case 'T':
		cl->tls = true;
		return true;
	case 'A':
		cl->ca_file = optarg;
		return true;
	default:
		return false;
	}
}

int main(int argc, char **argv)
{
	struct import_options opt = {
		.maildir_template = "~/Maildir",
		.dest_template = "%u",
		.progress = true,
	};
	static const struct option long_opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"maildir", required_argument, NULL, 'm'},
		{"uidl-format", required_argument, NULL, 'u'},
		{"domain", required_argument, NULL, 'D'},
		{"copy", no_argument, NULL, 'C'},
		{"dest", required_argument, NULL, 'd'},
		{"into-sql", no_argument, NULL, 'S'},
		{"dry-run", no_argument, NULL, 'n'},
		{"quiet", no_argument, NULL, 'q'},
		{"host", required_argument, NULL, 'H'},
		{"port", required_argument, NULL, 'P'},
		{"tls", no_argument, NULL, 'T'},
		{"tls-ca", required_argument, NULL, 'A'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	struct command_line cl = {.config_path = DEFAULT_CONFIG_PATH, .opt = &opt};
	int c;
	/* "+": options may come before or after the source's name, and stop
	 * at the first operand of the source */
	while ((c = getopt_long(argc, argv, "+c:", long_opts, NULL)) != -1) {
		if (take_option(c, &cl))
			continue;
		if (c == 'h') {
			fputs(usage_text, stdout);
			return EX_OK;
		}
		if (c == 'V') {
			tool_version("tpops-import");
			return EX_OK;
		}
		fputs(usage_text, stderr);
		return EX_USAGE;
	}
	if (optind >= argc) {
		fputs(usage_text, stderr);
		return EX_USAGE;
	}
	const char *source = argv[optind++];
	/* the source's own options may follow its name */
	while ((c = getopt_long(argc, argv, "c:", long_opts, NULL)) != -1) {
		if (!take_option(c, &cl)) {
			fputs(usage_text, stderr);
			return EX_USAGE;
		}
	}
	int (*run)(int, char **, struct db *, const struct config *, struct import_options *,
		   struct import_stats *);
	if (strcmp(source, "dovecot") == 0)
		run = import_dovecot;
	else if (strcmp(source, "courier") == 0)
		run = import_courier;
	else if (strcmp(source, "pop3") == 0)
		run = import_pop3;
	else {
		fprintf(stderr, "tpops-import: %s: not a source (dovecot, courier or pop3)\n",
			source);
		return EX_USAGE;
	}
	if (strcmp(source, "pop3") == 0) {
		if (cl.host == NULL) {
			fprintf(stderr, "tpops-import: pop3 needs --host HOST\n");
			return EX_USAGE;
		}
		if (cl.ca_file != NULL && !cl.tls) {
			fprintf(stderr, "tpops-import: --tls-ca goes with --tls\n");
			return EX_USAGE;
		}
		import_pop3_endpoint(cl.host, cl.port, cl.tls, cl.ca_file);
	} else if (cl.host != NULL || cl.port != NULL || cl.tls || cl.ca_file != NULL) {
		fprintf(stderr, "tpops-import: --host, --port, --tls and --tls-ca are for pop3\n");
		return EX_USAGE;
	}
	struct config cfg;
	struct db *db = tool_open("tpops-import", cl.config_path, &cfg);
	if (opt.into_sql && cfg.mailbox != MAILBOX_SQL) {
		fprintf(stderr,
			"tpops-import: --into-sql, but %s says Mailbox: Maildir (tpops "
			"would not "
			"serve those messages)\n",
			cfg.path);
		tool_close(db, &cfg);
		return EX_USAGE;
	}
	if (!opt.into_sql && cfg.mailbox == MAILBOX_SQL) {
		fprintf(stderr,
			"tpops-import: %s stores mail in the SQL database: give --into-sql to "
			"import into it\n",
			cfg.path);
		tool_close(db, &cfg);
		return EX_USAGE;
	}
	/* Interrupting the run (Ctrl-C, a crash, a power cut) is safe at any
	 * point: every message is written whole or not at all, and the next
	 * run finishes the job (see import_target.c). */
	signal(SIGPIPE, SIG_IGN);
	struct import_stats st = {0};
	import_progress_start(&st, opt.progress);
	int rc = run(argc - optind, argv + optind, db, &cfg, &opt, &st);
	import_summary(&st, opt.dry_run);
	tool_close(db, &cfg);
	return rc;
}
