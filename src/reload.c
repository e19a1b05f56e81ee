/* SIGHUP: a new configuration for new sessions; a bad one changes nothing. */
#include "reload.h"

#include <string.h>

#include "db.h"
#include "log.h"
#include "startup_check.h"
#include "tls.h"
#include "worker.h"

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

/* The listeners, the threads and the logging were set up at start. */
static bool startup_settings_differ(const struct config *next, const struct config *old)
{
	return next->port != old->port || next->tls_port != old->tls_port ||
	       lists_differ(next->listen, old->listen) || strcmp(next->user, old->user) != 0 ||
	       strcmp(next->group, old->group) != 0 || next->io_threads != old->io_threads ||
	       next->workers != old->workers || next->log != old->log ||
	       next->syslog_facility != old->syslog_facility ||
	       strs_differ(next->control_socket, old->control_socket) ||
	       strs_differ(next->metrics_listen, old->metrics_listen) ||
	       next->metrics_port != old->metrics_port || next->metrics_public != old->metrics_public ||
	       strs_differ(next->lmtp_listen, old->lmtp_listen) ||
	       next->lmtp_max_message_size != old->lmtp_max_message_size ||
	       next->lmtp_timeout != old->lmtp_timeout ||
	       next->lmtp_max_connections != old->lmtp_max_connections;
}

/* The storage workers keep their open database connections. */
static bool database_settings_differ(const struct config *next, const struct config *old)
{
	return next->database != old->database ||
	       strs_differ(next->sqlite_path, old->sqlite_path) ||
	       strs_differ(next->mysql_server, old->mysql_server) ||
	       strs_differ(next->mysql_user, old->mysql_user) ||
	       strs_differ(next->mysql_pass, old->mysql_pass) ||
	       strs_differ(next->mysql_db, old->mysql_db) || next->mysql_port != old->mysql_port ||
	       strs_differ(next->mysql_socket, old->mysql_socket) ||
	       next->mysql_failback_time != old->mysql_failback_time;
}

/* Logged, and added to report when there is one. */
static void note(struct buf *report, const char *text)
{
	log_warn("reload: %s", text);
	if (report != NULL)
		buf_printf(report, "%s\n", text);
}

static void warn_restart_only(const struct config *next, const struct config *old,
			      struct buf *report)
{
	if (startup_settings_differ(next, old))
		note(report, "Port, Listen, TLS_Port, User, Group, IOThreads, Workers, Log, "
			     "SyslogFacility, ControlSocket, MetricsListen and LMTP_* changes take "
			     "effect at the next restart");
	if (database_settings_differ(next, old))
		note(report, "database connection changes (Database, SQLite_Path, MySQL_*) take "
			     "effect at the next restart");
	if (old->tls_cert != NULL && next->tls_cert == NULL)
		note(report, "TLS stays on with the old certificate until a restart");
}

struct config *reload_config(const char *path, const struct config *old, struct server *srv,
			     bool verbose, struct buf *report)
{
	char err[1024];
	struct config *next = config_new(path, err, sizeof err);
	if (next == NULL || startup_check_config(next, err, sizeof err) != 0 ||
	    tls_load(next, err, sizeof err) != 0) {
		log_error("reload refused, the running configuration stays in force: %s", err);
		if (report != NULL)
			buf_printf(report, "%s\n", err);
		config_release(next);
		return NULL;
	}
	warn_restart_only(next, old, report);
	log_set_level(verbose ? LOGLEVEL_DEBUG : next->log_level);
	server_set_config(srv, next);
	worker_set_config(next);
	/* a database connection that failed over moves back to the first
	 * MySQL_Server host (the administrator says it is back) */
	db_mysql_failback();
	log_info("configuration reloaded from %s", next->path);
	if (report != NULL)
		buf_printf(report, "configuration reloaded from %s\n", next->path);
	return next;
}
