/* The standing daemon. Set-up: bind the listeners (as root), drop
 * privileges, check the database, detach, write the PID file, install the
 * signal events, start the storage workers and the I/O threads. Serving:
 * the main loop only handles signals (SIGHUP reload, SIGTERM graceful
 * stop); the sessions live on the I/O threads. */
#include "daemon.h"

#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "conn_limit.h"
#include "db.h"
#include "lmtp_server.h"
#include "log.h"
#include "privsep.h"
#include "reload.h"
#include "sdnotify.h"
#include "server.h"
#include "startup_check.h"
#include "tls.h"
#include "worker.h"

/* How long SIGTERM waits for sessions that are committing their QUIT. */
#define SHUTDOWN_GRACE_SECONDS 10

struct daemon_state {
	const char *config_path;
	bool verbose;
	const struct config *cfg; /* the one in force */
	struct server *srv;
	struct lmtp_server *lmtp; /* NULL unless LMTP_Listen is set */
	struct admin *admin; /* control socket and metrics listener */
	struct event_base *base;
	struct event *signals[3]; /* SIGTERM, SIGINT, SIGHUP */
	struct event *grace_timer;
	time_t stop_deadline;
	int io_threads, workers;
};

static int cpu_count(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (int)n : 1;
}

/* SIGHUP, or tpops-admin reload (which gets the report); true when the
 * new configuration is in force. On the main thread. */
static bool reload_now(void *arg, struct buf *report)
{
	struct daemon_state *d = arg;
	sdnotify_reloading();
	struct config *next = reload_config(d->config_path, d->cfg, d->srv, d->verbose, report);
	if (next != NULL) {
		config_release(d->cfg);
		d->cfg = next;
	}
	sdnotify_ready(NULL);
	return next != NULL;
}

static void on_reload(evutil_socket_t sig, short what, void *arg)
{
	reload_now(arg, NULL);
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
	lmtp_server_shutdown(d->lmtp);
	d->stop_deadline = time(NULL) + SHUTDOWN_GRACE_SECONDS;
	d->grace_timer = event_new(d->base, -1, EV_PERSIST, check_stopped, d);
	struct timeval tick = {0, 50 * 1000};
	event_add(d->grace_timer, &tick);
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

/* As root: every socket the daemon listens on is bound here, before the
 * privilege drop. */
static void open_listeners(struct daemon_state *d)
{
	char err[1024];
	d->srv = server_bind(d->cfg, err, sizeof err);
	if (d->srv == NULL)
		log_fatal("%s", err);
	if (lmtp_server_bind(d->cfg, &d->lmtp, err, sizeof err) != 0)
		log_fatal("%s", err);
	d->admin = admin_bind(d->cfg, err, sizeof err);
	if (d->admin == NULL)
		log_fatal("%s", err);
}

/* The signal events exist before the first connection is served and
 * before READY=1: a SIGHUP or SIGTERM from then on is handled, never the
 * default action that kills the process. */
static void install_signal_events(struct daemon_state *d)
{
	d->base = event_base_new();
	if (d->base == NULL)
		log_fatal("libevent: cannot create the main event loop");
	d->signals[0] = evsignal_new(d->base, SIGTERM, on_terminate, d);
	d->signals[1] = evsignal_new(d->base, SIGINT, on_terminate, d);
	d->signals[2] = evsignal_new(d->base, SIGHUP, on_reload, d);
	for (size_t i = 0; i < sizeof d->signals / sizeof d->signals[0]; i++)
		if (d->signals[i] == NULL || event_add(d->signals[i], NULL) != 0)
			log_fatal("libevent: cannot watch for signals");
}

static void start_threads(struct daemon_state *d)
{
	d->io_threads = d->cfg->io_threads > 0 ? d->cfg->io_threads : cpu_count();
	d->workers = d->cfg->workers > 0 ? d->cfg->workers : 2 * cpu_count();
	worker_pool_start(d->cfg, d->workers, true);
	server_start(d->srv, d->io_threads);
	lmtp_server_start(d->lmtp);
	admin_start(d->admin, d->srv, d->base, reload_now, d);
}

/* Everything before serving; -1 when the database check refuses to go on. */
static int daemon_setup(struct daemon_state *d)
{
	char err[1024];
	open_listeners(d);
	if (privsep_drop(d->cfg->user, d->cfg->group, err, sizeof err) != 0)
		log_fatal("%s", err);
	if (startup_check_database(d->cfg, false) != 0)
		return -1;
	if (!d->cfg->foreground && daemon(0, 0) != 0)
		log_fatal("cannot become a daemon: %s", strerror(errno));
	write_pid_file(d->cfg);
	install_signal_events(d);
	start_threads(d);
	return 0;
}

static void daemon_serve(struct daemon_state *d)
{
	log_info("tpops %s serving POP3 on port %d%s (%s database, %d I/O threads, %d workers)",
		 TPOPS_VERSION, d->cfg->port, tls_available() ? " and POP3S" : "",
		 db_engine(d->cfg)->name, d->io_threads, d->workers);
	sdnotify_ready("serving POP3");
	event_base_dispatch(d->base);
}

static void daemon_teardown(struct daemon_state *d)
{
	admin_free(d->admin); /* before the I/O threads it asks go */
	server_stop(d->srv);
	bool lmtp_done = lmtp_server_stop(d->lmtp, SHUTDOWN_GRACE_SECONDS);
	/* jobs still queued (a QUIT commit) finish; a hung database does not
	 * hold the exit: its transaction rolls back when the process ends */
	if (conn_limit_total() == 0 && lmtp_done)
		worker_pool_stop();
	for (size_t i = 0; i < sizeof d->signals / sizeof d->signals[0]; i++)
		event_free(d->signals[i]);
	if (d->grace_timer != NULL)
		event_free(d->grace_timer);
	event_base_free(d->base);
	if (d->cfg->pid_file != NULL)
		unlink(d->cfg->pid_file);
	log_info("stopped");
}

int daemon_run(struct config *cfg, const char *config_path, bool verbose)
{
	struct daemon_state d = {.config_path = config_path, .verbose = verbose, .cfg = cfg};
	if (daemon_setup(&d) != 0)
		return 1;
	daemon_serve(&d);
	daemon_teardown(&d);
	return 0;
}
