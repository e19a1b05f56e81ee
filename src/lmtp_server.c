/* The LMTP listener: binds LMTP_Listen, runs one I/O thread that accepts
 * and serves the connections (lmtp_session.c), and stops them at
 * shutdown. One thread is plenty: an MTA keeps a few connections, and
 * the work (the store) is done on the storage workers. */
#include "lmtp_server.h"

#include <errno.h>
#include <event2/listener.h>
#include <netdb.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ioloop.h"
#include "listen_socket.h"
#include "lmtp_session.h"
#include "log.h"
#include "xalloc.h"

#define INET_PREFIX "inet:"

static int bind_unix(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof sun.sun_path) {
		snprintf(err, errlen, "LMTP_Listen: %s: longer than a socket path may be", path);
		return -1;
	}
	memcpy(sun.sun_path, path, strlen(path));
	if (listen_unix_clear_stale("LMTP_Listen", path, err, errlen) != 0)
		return -1;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "LMTP_Listen: socket: %s", strerror(errno));
		return -1;
	}
	/* 0666 as Dovecot's lmtp socket: who may deliver is decided by the
	 * permissions of the directory it is in */
	if (bind(fd, (struct sockaddr *)&sun, sizeof sun) != 0 || chmod(path, 0666) != 0 ||
	    listen(fd, 128) != 0) {
		snprintf(err, errlen, "LMTP_Listen: cannot listen on %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* inet:ADDRESS:PORT, ADDRESS an IPv4 address or a bracketed IPv6 one:
 * the socket address (numeric only: no lookup), *ai_r to be freed. */
static int resolve_inet(const char *spec, struct addrinfo **ai_r, char *err, size_t errlen)
{
	const char *hostport = spec + strlen(INET_PREFIX);
	const char *colon = strrchr(hostport, ':');
	if (colon == NULL || colon == hostport || colon[1] == '\0') {
		snprintf(err, errlen, "LMTP_Listen: \"%s\": expected inet:ADDRESS:PORT", spec);
		return -1;
	}
	char host[128];
	size_t hlen = (size_t)(colon - hostport);
	if (hostport[0] == '[' && hlen >= 2 && colon[-1] == ']') {
		hostport++;
		hlen -= 2;
	}
	if (hlen >= sizeof host) {
		snprintf(err, errlen, "LMTP_Listen: \"%s\": address too long", spec);
		return -1;
	}
	memcpy(host, hostport, hlen);
	host[hlen] = '\0';
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
				 .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE};
	int rc = getaddrinfo(host, colon + 1, &hints, ai_r);
	if (rc != 0) {
		snprintf(err, errlen, "LMTP_Listen: \"%s\": %s", spec, gai_strerror(rc));
		return -1;
	}
	return 0;
}

static int bind_inet(const char *spec, char *err, size_t errlen)
{
	struct addrinfo *ai = NULL;
	if (resolve_inet(spec, &ai, err, errlen) != 0)
		return -1;
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int on = 1;
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
	if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 128) != 0) {
		snprintf(err, errlen, "LMTP_Listen: cannot listen on %s: %s", spec, strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	return fd;
}

int lmtp_server_check_config(const struct config *cfg, char *err, size_t errlen)
{
	const char *spec = cfg->lmtp_listen;
	if (spec == NULL)
		return 0;
	if (spec[0] == '/') {
		struct sockaddr_un sun;
		if (strlen(spec) >= sizeof sun.sun_path) {
			snprintf(err, errlen, "%s: LMTP_Listen: %s: longer than a socket path may be",
				 cfg->path, spec);
			return -1;
		}
		return 0;
	}
	if (strncmp(spec, INET_PREFIX, strlen(INET_PREFIX)) == 0) {
		struct addrinfo *ai = NULL;
		char why[256];
		if (resolve_inet(spec, &ai, why, sizeof why) != 0) {
			snprintf(err, errlen, "%s: %s", cfg->path, why);
			return -1;
		}
		freeaddrinfo(ai);
		return 0;
	}
	snprintf(err, errlen,
		 "%s: LMTP_Listen: \"%s\" is neither an absolute socket path nor inet:ADDRESS:PORT",
		 cfg->path, spec);
	return -1;
}

int lmtp_server_bind(const struct config *cfg, struct lmtp_server **srv_r, char *err,
		     size_t errlen)
{
	*srv_r = NULL;
	const char *spec = cfg->lmtp_listen;
	if (spec == NULL)
		return 0;
	if (lmtp_server_check_config(cfg, err, errlen) != 0)
		return -1;
	int fd = spec[0] == '/' ? bind_unix(spec, err, errlen) : bind_inet(spec, err, errlen);
	if (fd < 0)
		return -1;
	/* The storage workers write the database and Maildirs for LMTP: a
	 * write past RLIMIT_FSIZE must fail with EFBIG (a 451 answer), not
	 * end the daemon with SIGXFSZ. */
	signal(SIGXFSZ, SIG_IGN);
	struct lmtp_server *srv = xcalloc(1, sizeof *srv);
	srv->cfg = config_hold(cfg);
	srv->fd = fd;
	srv->socket_path = spec[0] == '/' ? xstrdup(spec) : NULL;
	*srv_r = srv;
	return 0;
}

static void on_accept(struct evconnlistener *listener, evutil_socket_t fd, struct sockaddr *addr,
		      int len, void *arg)
{
	lmtp_session_start(arg, fd);
}

void lmtp_server_start(struct lmtp_server *srv)
{
	if (srv == NULL)
		return;
	srv->loop = ioloop_new(0);
	srv->listener = evconnlistener_new(srv->loop->base, on_accept, srv, LEV_OPT_CLOSE_ON_FREE,
					   -1, srv->fd);
	if (srv->listener == NULL)
		log_fatal("libevent: cannot accept on LMTP_Listen %s", srv->cfg->lmtp_listen);
	ioloop_start_thread(srv->loop);
	log_info("serving LMTP on %s", srv->cfg->lmtp_listen);
}

/* On the LMTP thread (posted there by lmtp_server_shutdown). */
static void shutdown_on_loop(struct job *job)
{
	struct lmtp_server *srv = (struct lmtp_server *)((char *)job -
							  offsetof(struct lmtp_server, shutdown_job));
	srv->stopping = true;
	evconnlistener_disable(srv->listener);
	lmtp_session_shutdown_all(srv);
}

void lmtp_server_shutdown(struct lmtp_server *srv)
{
	if (srv == NULL || srv->loop == NULL)
		return;
	srv->shutdown_job.done = shutdown_on_loop;
	ioloop_post(srv->loop, &srv->shutdown_job);
}

bool lmtp_server_stop(struct lmtp_server *srv, int grace_seconds)
{
	if (srv == NULL)
		return true;
	if (srv->loop != NULL) {
		time_t deadline = time(NULL) + grace_seconds;
		while (atomic_load(&srv->nsessions) > 0 && time(NULL) < deadline) {
			struct timespec tick = {0, 20 * 1000 * 1000};
			nanosleep(&tick, NULL);
		}
		ioloop_stop(srv->loop);
		ioloop_join(srv->loop);
		if (srv->jobs > 0) {
			/* a delivery hangs in the store: its job still holds the
			 * session and will post to the loop, so neither is freed;
			 * the process is about to end anyway */
			log_warn("lmtp: %u deliveries still running after %d s; leaving them",
				 srv->jobs, grace_seconds);
			return false;
		}
		lmtp_session_free_all(srv);
		evconnlistener_free(srv->listener);
		ioloop_free(srv->loop);
	} else {
		close(srv->fd);
	}
	/* the socket is ours to remove when its directory lets us (after the
	 * privilege drop it may not; the next start replaces it then) */
	if (srv->socket_path != NULL)
		(void)unlink(srv->socket_path);
	free(srv->socket_path);
	config_release(srv->cfg);
	free(srv);
	return true;
}
