/* tpops, the POP3 daemon: arguments, configuration, binding, privilege
 * drop, I/O threads, storage workers, signals (SIGHUP reload, SIGTERM
 * graceful stop), and inetd mode. */
#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "admin.h"
#include "buf.h"
#include "config.h"
#include "conn_limit.h"
#include "db.h"
#include "inetd.h"
#include "ioloop.h"
#include "log.h"
#include "maildrop.h"
#include "privsep.h"
#include "sdnotify.h"
#include "server.h"
#include "tls.h"
#include "worker.h"

/* How long SIGTERM waits for sessions that are committing their QUIT. */
#define SHUTDOWN_GRACE_SECONDS 10

static void usage(FILE *out)
{
	fprintf(out,
		"usage: tpops [-c FILE] [-f] [-t] [-v] [--inetd] [--help] [--version]\n"
		"  -c, --config FILE   configuration file (default " DEFAULT_CONFIG_PATH ")\n"
		"  -f, --foreground    stay in the foreground, log to stderr\n"
		"  -t, --check-config  check the configuration and the database, then exit\n"
		"  -v, --verbose       log every POP3 command (passwords never)\n"
		"      --inetd         serve one session on standard input and output\n");
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
	/* -t (fatal) fails on any error, a temporary one included: it must
	 * not report "reached" for a database it could not reach */
	return fatal || status == DB_PERMFAIL ? -1 : 0;
}

/* What the configuration asks that this build or start-up cannot give. */
static int check_config(const struct config *cfg, char *err, size_t errlen)
{
	if (maildrop_backend(cfg) == NULL) {
		snprintf(err, errlen, "%s: Mailbox: no backend for this mailbox type", cfg->path);
		return -1;
	}
	if (db_engine(cfg) == NULL) {
		snprintf(err, errlen, "%s: Database: no driver for this engine", cfg->path);
		return -1;
	}
	if ((cfg->tls_cert == NULL) != (cfg->tls_key == NULL)) {
		snprintf(err, errlen, "%s: TLS needs both TLS_Cert and TLS_Key", cfg->path);
		return -1;
	}
	if (cfg->require_tls && cfg->tls_cert == NULL) {
		snprintf(err, errlen, "%s: RequireTLS: yes needs TLS_Cert and TLS_Key", cfg->path);
		return -1;
	}
	return 0;
}

struct daemon_state {
	const char *config_path;
	bool verbose;
	const struct config *cfg; /* the one in force */
	struct server *srv;
	struct event_base *base;
	struct event *grace_timer;
	time_t stop_deadline;
};

static bool strs_differ(const char *a, const char *b)
{
	return (a == NULL) != (b == NULL) || (a != NULL && strcmp(a, b) != 0);
}

static bool lists_differ(char *const *a, char *const *b)
{
	for (; *a != NULL && *b != NULL; a++, b++)
		if (strcmp(*a, *b) != 0)
			return true;
	return *a != NULL || *b != NULL;
}

/* SIGHUP (or tpops-admin reload): a new configuration for new sessions;
 * a bad one changes nothing. report gets what happened, line by line. */
static bool reload(void *arg, struct buf *report)
{
	struct daemon_state *d = arg;
	char err[1024];
	sdnotify_reloading();
	struct config *next = config_new(d->config_path, err, sizeof err);
	if (next == NULL || check_config(next, err, sizeof err) != 0 ||
	    tls_load(next, err, sizeof err) != 0) {
		log_error("reload refused, the running configuration stays in force: %s", err);
		buf_printf(report, "%s\n", err);
		config_release(next);
		sdnotify_ready(NULL);
		return false;
	}
	const struct config *old = d->cfg;
	const char *note;
	if (next->port != old->port || next->tls_port != old->tls_port ||
	    lists_differ(next->listen, old->listen) || strcmp(next->user, old->user) != 0 ||
	    strcmp(next->group, old->group) != 0 || next->io_threads != old->io_threads ||
	    next->workers != old->workers || next->log != old->log ||
	    next->syslog_facility != old->syslog_facility ||
	    strs_differ(next->control_socket, old->control_socket) ||
	    strs_differ(next->metrics_listen, old->metrics_listen) ||
	    next->metrics_port != old->metrics_port) {
		note = "Port, Listen, TLS_Port, User, Group, IOThreads, Workers, Log, "
		       "SyslogFacility, ControlSocket and MetricsListen changes take effect at the "
		       "next restart";
		log_warn("reload: %s", note);
		buf_printf(report, "%s\n", note);
	}
	/* the storage workers keep their open database connections */
	if (next->database != old->database || strs_differ(next->sqlite_path, old->sqlite_path) ||
	    strs_differ(next->mysql_server, old->mysql_server) ||
	    strs_differ(next->mysql_user, old->mysql_user) ||
	    strs_differ(next->mysql_pass, old->mysql_pass) ||
	    strs_differ(next->mysql_db, old->mysql_db) || next->mysql_port != old->mysql_port ||
	    strs_differ(next->mysql_socket, old->mysql_socket)) {
		note = "database connection changes (Database, SQLite_Path, MySQL_*) take effect "
		       "at the next restart";
		log_warn("reload: %s", note);
		buf_printf(report, "%s\n", note);
	}
	if (old->tls_cert != NULL && next->tls_cert == NULL) {
		note = "TLS stays on with the old certificate until a restart";
		log_warn("reload: %s", note);
		buf_printf(report, "%s\n", note);
	}
	log_set_level(d->verbose ? LOGLEVEL_DEBUG : next->log_level);
	server_set_config(d->srv, next);
	worker_set_config(next);
	d->cfg = next;
	config_release(old);
	log_info("configuration reloaded from %s", next->path);
	buf_printf(report, "configuration reloaded from %s\n", next->path);
	sdnotify_ready(NULL);
	return true;
}

static void on_reload(evutil_socket_t sig, short what, void *arg)
{
	struct buf report = BUF_INIT;
	reload(arg, &report);
	buf_free(&report);
}

static void check_stopped(evutil_socket_t fd, short what, void *arg)
{
	struct daemon_state *d = arg;
	unsigned left = conn_limit_total();
	if (left == 0 || time(NULL) >= d->stop_deadline) {
		if (left > 0)
			log_warn("shutdown: %u sessions still open after %d s; ending them", left,
				 SHUTDOWN_GRACE_SECONDS);
		event_base_loopexit(d->base, NULL);
	}
}

/* SIGTERM: stop accepting, end idle sessions, let QUIT commits finish. */
static void on_terminate(evutil_socket_t sig, short what, void *arg)
{
	struct daemon_state *d = arg;
	if (d->grace_timer != NULL)
		return; /* already stopping */
	log_info("signal %d: shutting down", (int)sig);
	sdnotify_stopping();
	server_shutdown(d->srv);
	d->stop_deadline = time(NULL) + SHUTDOWN_GRACE_SECONDS;
	d->grace_timer = event_new(d->base, -1, EV_PERSIST, check_stopped, d);
	struct timeval tick = {0, 50 * 1000};
	event_add(d->grace_timer, &tick);
}

/* Every session holds a socket (and a Maildir session its directory):
 * use all the descriptors the hard limit allows, as MaxConnections may. */
static void raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void write_pid_file(const struct config *cfg)
{
	if (cfg->pid_file == NULL)
		return;
	FILE *f = fopen(cfg->pid_file, "w");
	if (f == NULL)
		log_fatal("PidFile %s: %s", cfg->pid_file, strerror(errno));
	fprintf(f, "%d\n", (int)getpid());
	fclose(f);
}

int main(int argc, char **argv)
{
	struct daemon_state d = {.config_path = DEFAULT_CONFIG_PATH};
	bool foreground = false, check_only = false, inetd = false;
	static const struct option options[] = {
		{"config", required_argument, NULL, 'c'},
		{"foreground", no_argument, NULL, 'f'},
		{"check-config", no_argument, NULL, 't'},
		{"verbose", no_argument, NULL, 'v'},
		{"inetd", no_argument, NULL, 'i'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	int opt;
	while ((opt = getopt_long(argc, argv, "c:ftvh", options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			d.config_path = optarg;
			break;
		case 'f':
			foreground = true;
			break;
		case 't':
			check_only = true;
			break;
		case 'v':
			d.verbose = true;
			break;
		case 'i':
			inetd = true;
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

	char err[1024];
	struct config *cfg = config_new(d.config_path, err, sizeof err);
	if (cfg == NULL) {
		fprintf(stderr, "tpops: %s\n", err);
		return 78;
	}
	if (foreground)
		cfg->foreground = true;
	d.cfg = cfg;
	/* -f and -t talk to the terminal; in inetd mode stdout is the client */
	enum config_log target = cfg->log;
	if (check_only || foreground)
		target = LOG_TO_STDERR;
	if (inetd && target == LOG_TO_STDERR && !foreground)
		target = LOG_TO_SYSLOG;
	log_open("tpops", target, d.verbose ? LOGLEVEL_DEBUG : cfg->log_level,
		 cfg->syslog_facility);
	if (check_config(cfg, err, sizeof err) != 0 ||
	    tls_load(cfg, err, sizeof err) != 0) { /* as root: the key may be root's */
		log_error("%s", err);
		config_release(cfg);
		return 78;
	}

	if (check_only) {
		/* the tools' rule: as root, act as User so no file becomes root's */
		if (privsep_drop(cfg->user, cfg->group, err, sizeof err) != 0)
			log_fatal("%s", err);
		int rc = 0;
		if (check_database(cfg, true) != 0) {
			fprintf(stderr, "tpops: configuration file %s test failed\n", cfg->path);
			rc = 1;
		} else {
			printf("tpops: the configuration file %s syntax is ok\n"
			       "tpops: database (%s) reached%s\n",
			       cfg->path, db_engine(cfg)->name,
			       tls_available() ? "; TLS certificate loaded" : "");
		}
		tls_unload();
		config_release(cfg);
		return rc;
	}

	ioloop_global_init();
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit();
	if (inetd) {
		/* one session: a reload (`pkill -HUP tpops`) must not kill it */
		signal(SIGHUP, SIG_IGN);
		if (privsep_drop(cfg->user, cfg->group, err, sizeof err) != 0)
			log_fatal("%s", err);
		int rc = inetd_serve(cfg);
		config_release(cfg);
		return rc;
	}

	d.srv = server_bind(cfg, err, sizeof err);
	if (d.srv == NULL)
		log_fatal("%s", err);
	struct admin *admin = admin_bind(cfg, err, sizeof err);
	if (admin == NULL)
		log_fatal("%s", err);
	if (privsep_drop(cfg->user, cfg->group, err, sizeof err) != 0)
		log_fatal("%s", err);
	if (check_database(cfg, false) != 0)
		return 1;
	if (!cfg->foreground && daemon(0, 0) != 0)
		log_fatal("cannot become a daemon: %s", strerror(errno));
	write_pid_file(cfg);

	/* The signal events exist before the first connection is served and
	 * before READY=1: a SIGHUP or SIGTERM from then on is handled, never
	 * the default action that kills the process. */
	d.base = event_base_new();
	if (d.base == NULL)
		log_fatal("libevent: cannot create the main event loop");
	struct event *term = evsignal_new(d.base, SIGTERM, on_terminate, &d);
	struct event *intr = evsignal_new(d.base, SIGINT, on_terminate, &d);
	struct event *hup = evsignal_new(d.base, SIGHUP, on_reload, &d);
	event_add(term, NULL);
	event_add(intr, NULL);
	event_add(hup, NULL);

	int io_threads = cfg->io_threads > 0 ? cfg->io_threads : cpu_count();
	int workers = cfg->workers > 0 ? cfg->workers : 2 * cpu_count();
	worker_pool_start(cfg, workers);
	server_start(d.srv, io_threads);
	admin_start(admin, d.srv, d.base, reload, &d);
	log_info("tpops %s serving POP3 on port %d%s (%s database, %d I/O threads, %d workers)",
		 TPOPS_VERSION, cfg->port, tls_available() ? " and POP3S" : "",
		 db_engine(cfg)->name, io_threads, workers);
	sdnotify_ready("serving POP3");
	event_base_dispatch(d.base);

	admin_free(admin); /* before the loops it asks go */
	server_stop(d.srv);
	/* jobs still queued (a QUIT commit) finish; a hung database does not
	 * hold the exit: its transaction rolls back when the process ends */
	if (conn_limit_total() == 0)
		worker_pool_stop();
	event_free(term);
	event_free(intr);
	event_free(hup);
	if (d.grace_timer != NULL)
		event_free(d.grace_timer);
	event_base_free(d.base);
	if (d.cfg->pid_file != NULL)
		unlink(d.cfg->pid_file);
	log_info("stopped");
	return 0;
}
