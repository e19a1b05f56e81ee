/* Listeners and I/O threads: bind, accept, connection limits. */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn_limit.h"
#include "ioloop.h"
#include "log.h"
#include "session.h"
#include "xalloc.h"

struct acceptor {
	struct server *srv;
	struct ioloop *loop;
	struct evconnlistener *listener;
};

struct server {
	const struct config *cfg;
	int *fds;
	size_t nfds;
	struct ioloop **loops;
	size_t nloops;
	struct acceptor *acceptors; /* nfds * nloops */
	struct timeval command_timeout;
};

static int bind_one(const char *address, int port, char *err, size_t errlen)
{
	struct sockaddr_storage ss = {0};
	socklen_t len;
	struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, address, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)port);
		len = sizeof *in4;
	} else if (inet_pton(AF_INET6, address, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		len = sizeof *in6;
	} else {
		snprintf(err, errlen, "Listen: \"%s\" is not an IPv4 or IPv6 address", address);
		return -1;
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket for %s: %s", address, strerror(errno));
		return -1;
	}
	int on = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
	/* "0.0.0.0 ::" both on one port: the IPv6 socket takes IPv6 only */
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
	if (bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 1024) != 0) {
		snprintf(err, errlen, "cannot listen on [%s]:%d: %s", address, port,
			 strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

struct server *server_bind(const struct config *cfg, char *err, size_t errlen)
{
	struct server *srv = xcalloc(1, sizeof *srv);
	srv->cfg = cfg;
	size_t n = 0;
	while (cfg->listen[n] != NULL)
		n++;
	srv->fds = xcalloc(n ? n : 1, sizeof *srv->fds);
	for (size_t i = 0; i < n; i++) {
		int fd = bind_one(cfg->listen[i], cfg->port, err, errlen);
		if (fd < 0) {
			server_free(srv);
			return NULL;
		}
		srv->fds[srv->nfds++] = fd;
	}
	return srv;
}

static void refuse(int fd, const char *why)
{
	char msg[128];
	int len = snprintf(msg, sizeof msg, "-ERR [SYS/TEMP] %s, try again later\r\n", why);
	(void)!send(fd, msg, (size_t)len, MSG_DONTWAIT | MSG_NOSIGNAL);
	close(fd);
}

static void on_accept(struct evconnlistener *listener, evutil_socket_t fd, struct sockaddr *addr,
		      int addrlen, void *arg)
{
	struct acceptor *a = arg;
	const struct config *cfg = a->srv->cfg;
	if (!conn_limit_acquire(addr, cfg->max_connections, cfg->max_connections_per_ip)) {
		log_warn("connection refused: limit reached (MaxConnections %d, "
			 "MaxConnectionsPerIP %d)",
			 cfg->max_connections, cfg->max_connections_per_ip);
		refuse(fd, "Too many connections");
		return;
	}
	/* replies are small and answer requests: do not let Nagle hold them */
	int on = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
	session_start(a->loop, cfg, fd, addr, (socklen_t)addrlen);
}

static void on_accept_error(struct evconnlistener *listener, void *arg)
{
	int err = EVUTIL_SOCKET_ERROR();
	/* EMFILE and friends: log and go on; the loop retries */
	log_error("accept: %s", evutil_socket_error_to_string(err));
}

void server_start(struct server *srv, int io_threads)
{
	srv->nloops = (size_t)io_threads;
	srv->loops = xcalloc(srv->nloops, sizeof *srv->loops);
	srv->acceptors = xcalloc(srv->nloops * (srv->nfds ? srv->nfds : 1), sizeof *srv->acceptors);
	srv->command_timeout = (struct timeval){srv->cfg->command_timeout, 0};
	for (size_t l = 0; l < srv->nloops; l++) {
		struct ioloop *loop = ioloop_new((unsigned)l);
		/* one shared timeout value: libevent keeps these in a queue, O(1) */
		loop->command_timeout =
			event_base_init_common_timeout(loop->base, &srv->command_timeout);
		srv->loops[l] = loop;
		/* every loop accepts on every socket; the kernel hands each
		 * connection to one of them */
		for (size_t f = 0; f < srv->nfds; f++) {
			struct acceptor *a = &srv->acceptors[l * srv->nfds + f];
			a->srv = srv;
			a->loop = loop;
			a->listener = evconnlistener_new(loop->base, on_accept, a,
							 LEV_OPT_CLOSE_ON_EXEC, -1, srv->fds[f]);
			if (a->listener == NULL)
				log_fatal("libevent: cannot listen on socket %d", srv->fds[f]);
			evconnlistener_set_error_cb(a->listener, on_accept_error);
		}
		ioloop_start_thread(loop);
	}
}

void server_stop(struct server *srv)
{
	for (size_t l = 0; l < srv->nloops; l++)
		ioloop_stop(srv->loops[l]);
	for (size_t l = 0; l < srv->nloops; l++)
		ioloop_join(srv->loops[l]);
}

void server_free(struct server *srv)
{
	for (size_t i = 0; i < srv->nloops * srv->nfds; i++)
		if (srv->acceptors && srv->acceptors[i].listener)
			evconnlistener_free(srv->acceptors[i].listener);
	for (size_t f = 0; f < srv->nfds; f++)
		close(srv->fds[f]);
	free(srv->fds);
	free(srv->acceptors);
	free(srv->loops);
	free(srv);
}
