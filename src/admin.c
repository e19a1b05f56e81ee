/* The administration thread and its two sockets: the control socket of
 * tpops-admin and the metrics listener. */
#include "admin.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <grp.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "census.h"
#include "conn_limit.h"
#include "health.h"
#include "listen_socket.h"
#include "log.h"
#include "server.h"
#include "xalloc.h"

/* How long a question to the I/O threads may take before an answer
 * leaves out the ones that did not answer (and /health says 503). */
#define ADMIN_CENSUS_TIMEOUT_MS 1000

/* A listening Unix socket at path, owned by root (when run as root) and
 * the daemon's group, with mode 0660: root and the daemon's group may
 * connect; control.c checks who the peer is on top of that. */
static int unix_listen(const char *path, const struct config *cfg, const char *key, char *err,
		       size_t errlen)
{
	/* its directory (/run/tpops) is made when missing, one level only */
	char dir[sizeof ((struct sockaddr_un *)0)->sun_path];
	snprintf(dir, sizeof dir, "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash != NULL && slash != dir) {
		*slash = '\0';
		if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
			snprintf(err, errlen,
				 "%s: cannot make the directory %s: %s (set %s to another path in "
				 "tpops.conf, or to none)",
				 key, dir, strerror(errno), key);
			return -1;
		}
	}
	if (listen_unix_clear_stale(key, path, err, errlen) != 0)
		return -1;
	gid_t gid = (gid_t)-1;
	if (geteuid() == 0) {
		struct group *gr = getgrnam(cfg->group);
		if (gr == NULL) {
			snprintf(err, errlen, "Group: system group \"%s\" does not exist", cfg->group);
			return -1;
		}
		gid = gr->gr_gid;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "%s: socket: %s", key, strerror(errno));
		return -1;
	}
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
	/* nobody may connect before the owner and mode are right */
	mode_t old = umask(0177);
	int rc = bind(fd, (struct sockaddr *)&sun, sizeof sun);
	umask(old);
	if (rc != 0 || (gid != (gid_t)-1 && chown(path, 0, gid) != 0) || chmod(path, 0660) != 0 ||
	    listen(fd, 64) != 0) {
		snprintf(err, errlen, "%s: cannot listen on %s: %s (set %s to another path in "
			 "tpops.conf, or to none)",
			 key, path, strerror(errno), key);
		close(fd);
		return -1;
	}
	return fd;
}

struct admin *admin_bind(const struct config *cfg, char *err, size_t errlen)
{
	struct admin *a = xcalloc(1, sizeof *a);
	a->cfg = config_hold(cfg);
	a->control_fd = a->metrics_fd = -1;
	if (cfg->control_socket != NULL) {
		a->control_fd = unix_listen(cfg->control_socket, cfg, "ControlSocket", err, errlen);
		if (a->control_fd < 0) {
			admin_free(a);
			return NULL;
		}
	}
	if (cfg->metrics_listen != NULL) {
		a->metrics_unix = cfg->metrics_listen[0] == '/';
		a->metrics_fd = a->metrics_unix
					? unix_listen(cfg->metrics_listen, cfg, "MetricsListen", err, errlen)
					: listen_tcp("MetricsListen", cfg->metrics_listen,
						     cfg->metrics_port, 64, err, errlen);
		if (a->metrics_fd < 0) {
			admin_free(a);
			return NULL;
		}
	}
	/* before any thread that counts starts */
	if (a->control_fd >= 0 || a->metrics_fd >= 0)
		metrics_enable();
	return a;
}

static void *admin_main(void *arg)
{
	struct admin *a = arg;
	event_base_loop(a->base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

void admin_start(struct admin *a, struct server *srv, struct event_base *main_base,
		 admin_reload_fn reload, void *reload_arg)
{
	if (a->control_fd < 0 && a->metrics_fd < 0)
		return; /* nothing asks: nothing is counted */
	a->srv = srv;
	a->main_base = main_base;
	a->reload = reload;
	a->reload_arg = reload_arg;
	a->daemon_uid = geteuid();
	size_t nloops;
	struct ioloop *const *loops = server_loops(srv, &nloops);
	census_set_loops(loops, nloops);
	if (a->metrics_fd >= 0)
		health_probe_start(a->cfg);
	a->base = event_base_new();
	if (a->base == NULL)
		log_fatal("libevent: cannot create the administration event loop");
	if (a->control_fd >= 0 && control_serve(a) != 0)
		log_fatal("ControlSocket: cannot serve on %s", a->cfg->control_socket);
	if (a->metrics_fd >= 0 && metrics_http_serve(a) != 0)
		log_fatal("MetricsListen: cannot serve HTTP");
	int rc = pthread_create(&a->thread, NULL, admin_main, a);
	if (rc != 0)
		log_fatal("cannot start the administration thread: error %d", rc);
	a->started = true;
	if (a->metrics_fd >= 0) {
		if (a->metrics_unix)
			log_info("metrics on http+unix:%s (GET /metrics, GET /health)",
				 a->cfg->metrics_listen);
		else
			log_info("metrics on http://%s%s%s:%d/metrics%s",
				 strchr(a->cfg->metrics_listen, ':') ? "[" : "", a->cfg->metrics_listen,
				 strchr(a->cfg->metrics_listen, ':') ? "]" : "", a->cfg->metrics_port,
				 a->cfg->metrics_public ? " (public)" : "");
	}
}

void admin_free(struct admin *a)
{
	if (a == NULL)
		return;
	if (a->started) {
		__atomic_store_n(&a->stopping, true, __ATOMIC_RELAXED);
		event_base_loopexit(a->base, NULL);
		pthread_join(a->thread, NULL);
	}
	if (a->http != NULL)
		evhttp_free(a->http); /* closes the metrics socket */
	else if (a->metrics_fd >= 0)
		close(a->metrics_fd);
	if (a->control != NULL)
		evconnlistener_free(a->control); /* closes the control socket */
	else if (a->control_fd >= 0)
		close(a->control_fd);
	if (a->base != NULL)
		event_base_free(a->base);
	health_probe_stop();
	config_release(a->cfg);
	free(a);
}

void admin_live(struct admin *a, struct metrics_live *live, char *why, size_t whylen)
{
	memset(live, 0, sizeof *live);
	if (why != NULL && whylen > 0)
		why[0] = '\0';
	struct census *c = census_take(CENSUS_COUNT, NULL, NULL, 0, ADMIN_CENSUS_TIMEOUT_MS);
	memcpy(live->sessions, c->sessions, sizeof live->sessions);
	live->loops = c->loops;
	live->loops_answered = c->answered;
	census_free(c);
	live->connections_open = conn_limit_total();
	live->accepting = server_accepting(a->srv);
	live->probing = a->metrics_fd >= 0;
	char db_why[256] = "";
	live->database_up = live->probing && health_database_up(db_why, sizeof db_why);
	live->healthy = live->accepting && live->loops_answered == live->loops && live->database_up;
	if (why == NULL || live->healthy)
		return;
	if (!live->accepting)
		snprintf(why, whylen, "not accepting connections (shutting down, or MaxConnections "
				      "reached)");
	else if (live->loops_answered != live->loops)
		snprintf(why, whylen, "%u of %u I/O threads did not answer within %d ms",
			 live->loops - live->loops_answered, live->loops, ADMIN_CENSUS_TIMEOUT_MS);
	else
		snprintf(why, whylen, "database: %s", db_why);
}
