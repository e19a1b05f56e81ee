/* tpops, the POP3 daemon: arguments, configuration, binding, privilege
 * drop, I/O threads, storage workers, signals. */
#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "db.h"
#include "ioloop.h"
#include "log.h"
#include "maildrop.h"
#include "privsep.h"
#include "server.h"
#include "worker.h"

static void usage(FILE *out)
{
	fprintf(out, "usage: tpops [-c FILE] [-f] [-t] [-v] [--help] [--version]\n"
		     "  -c, --config FILE   configuration file (default " DEFAULT_CONFIG_PATH ")\n"
		     "  -f, --foreground    stay in the foreground, log to stderr\n"
		     "  -t, --check-config  check the configuration and the database, then exit\n"
		     "  -v, --verbose       log every POP3 command (passwords never)\n");
}

static int cpu_count(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (int)n : 1;
}

/* Opens the database once, so that a wrong path or a missing schema shows
 * at start-up rather than at the first login. */
static int check_database(const struct config *cfg, bool fatal)
{
	char err[512];
	struct db *db = NULL;
	int status = db_open(cfg, &db, err, sizeof err);
	if (status == DB_OK) {
		uint64_t bytes;
		status = db->ops->msg_usage(db, 0, &bytes);
		if (status != DB_OK)
			snprintf(err, sizeof err, "%s (create the schema with tpops-dbinit)",
				 db_error(db));
		db_close(db);
	}
	if (status == DB_OK)
		return 0;
	if (fatal || status == DB_PERMFAIL)
		log_error("database: %s", err);
	else
		log_warn("database: %s; logins fail with [SYS/TEMP] until it works", err);
	return status == DB_PERMFAIL ? -1 : 0;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	log_info("signal %d: shutting down", (int)sig);
	event_base_loopexit(arg, NULL);
}

int main(int argc, char **argv)
{
	const char *config_path = DEFAULT_CONFIG_PATH;
	bool foreground = false, check_only = false, verbose = false;
	static const struct option options[] = {
		{"config", required_argument, NULL, 'c'},
		{"foreground", no_argument, NULL, 'f'},
		{"check-config", no_argument, NULL, 't'},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	int opt;
	while ((opt = getopt_long(argc, argv, "c:ftvh", options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config_path = optarg;
			break;
		case 'f':
			foreground = true;
			break;
		case 't':
			check_only = true;
			break;
		case 'v':
			verbose = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("tpops %s\n", TPOPS_VERSION);
			return 0;
		default:
			usage(stderr);
			return 64;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 64;
	}

	static struct config cfg;
	char err[1024];
	if (config_load(&cfg, config_path, err, sizeof err) != 0) {
		fprintf(stderr, "tpops: %s\n", err);
		return 78;
	}
	if (foreground)
		cfg.foreground = true;
	log_open("tpops", check_only || cfg.foreground ? (cfg.log == LOG_TO_SYSLOG && !check_only && !foreground ? LOG_TO_SYSLOG : LOG_TO_STDERR) : cfg.log,
		 verbose ? LOGLEVEL_DEBUG : cfg.log_level);
	if (cfg.tls_cert != NULL || cfg.tls_key != NULL || cfg.require_tls)
		log_fatal("%s: TLS_Cert/TLS_Key/RequireTLS: this build has no TLS support yet",
			  cfg.path);
	if (maildrop_backend(&cfg) == NULL)
		log_fatal("%s: Mailbox: this build cannot serve that mailbox type yet", cfg.path);
	if (check_only) {
		if (check_database(&cfg, true) != 0)
			return 1;
		printf("tpops: the configuration file %s syntax is ok\n"
		       "tpops: database (%s) reached\n",
		       cfg.path, db_engine(&cfg)->name);
		return 0;
	}

	ioloop_global_init();
	signal(SIGPIPE, SIG_IGN);
	struct server *srv = server_bind(&cfg, err, sizeof err);
	if (srv == NULL)
		log_fatal("%s", err);
	if (privsep_drop(cfg.user, cfg.group, err, sizeof err) != 0)
		log_fatal("%s", err);
	if (check_database(&cfg, false) != 0)
		return 1;
	if (!cfg.foreground && daemon(0, 0) != 0)
		log_fatal("cannot become a daemon: %s", strerror(errno));
	if (cfg.pid_file != NULL) {
		FILE *f = fopen(cfg.pid_file, "w");
		if (f == NULL)
			log_fatal("PidFile %s: %s", cfg.pid_file, strerror(errno));
		fprintf(f, "%d\n", (int)getpid());
		fclose(f);
	}

	int io_threads = cfg.io_threads > 0 ? cfg.io_threads : cpu_count();
	int workers = cfg.workers > 0 ? cfg.workers : 2 * cpu_count();
	worker_pool_start(&cfg, workers);
	server_start(srv, io_threads);
	log_info("tpops %s serving POP3 on port %d (%s database, %d I/O threads, %d workers)",
		 TPOPS_VERSION, cfg.port, db_engine(&cfg)->name, io_threads, workers);

	struct event_base *main_base = event_base_new();
	struct event *term = evsignal_new(main_base, SIGTERM, on_signal, main_base);
	struct event *intr = evsignal_new(main_base, SIGINT, on_signal, main_base);
	event_add(term, NULL);
	event_add(intr, NULL);
	event_base_dispatch(main_base);

	server_stop(srv);
	worker_pool_stop();
	event_free(term);
	event_free(intr);
	event_base_free(main_base);
	server_free(srv);
	if (cfg.pid_file != NULL)
		unlink(cfg.pid_file);
	config_free(&cfg);
	log_info("stopped");
	return 0;
}
