/* Listeners and I/O threads: bind, accept, connection limits. */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn_limit.h"
#include "handoff.h"
#include "ioloop.h"
#include "proxy_wait.h"
#include "listen_socket.h"
#include "log.h"
#include "metrics.h"
#include "sd_listen.h"
#include "session.h"
#include "tls.h"
#include "xalloc.h"

struct acceptor {
	struct server *srv;
	struct ioloop *loop;
	struct evconnlistener *listener;
	bool tls; /* POP3S: implicit TLS */
	struct proxy_wait *proxy_waits; /* connections waiting for their PROXY header */
};

struct server {
	pthread_mutex_t cfg_mutex;
	const struct config *cfg; /* for new sessions; swapped by a reload */
	int *fds;
	bool *fd_tls;
	size_t nfds;
	struct ioloop **loops;
	size_t nloops;
	struct acceptor *acceptors; /* nfds * nloops */
	struct timeval command_timeout;
	bool stopping; /* SIGTERM: no new sessions (atomic) */
};

static void add_fd(struct server *srv, int fd, bool tls)
{
	srv->fds = xrealloc(srv->fds, (srv->nfds + 1) * sizeof *srv->fds);
	srv->fd_tls = xrealloc(srv->fd_tls, (srv->nfds + 1) * sizeof *srv->fd_tls);
	srv->fds[srv->nfds] = fd;
	srv->fd_tls[srv->nfds] = tls;
	srv->nfds++;
}

/* Sockets passed by systemd (tpops.socket) replace Listen/Port/TLS_Port:
 * a socket on TLS_Port (995 by default) or named "pop3s" is POP3S. */
static int take_activated_sockets(struct server *srv, char *err, size_t errlen)
{
	struct sd_listen_socket *sa = NULL;
	int n = sd_listen_fds(true, &sa, err, errlen);
	for (int i = 0; i < n; i++) {
		if (!sa[i].stream || !sa[i].listening) {
			snprintf(err, errlen, "socket activation: fd %d is not a listening stream socket",
				 sa[i].fd);
			n = -1;
			break;
		}
		bool tls = sd_listen_is_tls(&sa[i], srv->cfg->tls_port);
		if (tls && !tls_available()) {
			log_warn("socket activation: fd %d (port %d) is for POP3S but no TLS_Cert is "
				 "set; closing it", sa[i].fd, sa[i].port);
			close(sa[i].fd);
			continue;
		}
		/* every loop accepts on every socket: it must not block */
		fcntl(sa[i].fd, F_SETFL, fcntl(sa[i].fd, F_GETFL) | O_NONBLOCK);
		fcntl(sa[i].fd, F_SETFD, FD_CLOEXEC);
		add_fd(srv, sa[i].fd, tls);
	}
	free(sa);
	return n;
}

struct server *server_bind(const struct config *cfg, char *err, size_t errlen)
{
	struct server *srv = xcalloc(1, sizeof *srv);
	pthread_mutex_init(&srv->cfg_mutex, NULL);
	srv->cfg = config_hold(cfg);
	int activated = take_activated_sockets(srv, err, errlen);
	if (activated < 0) {
		server_free(srv);
		return NULL;
	}
	if (activated > 0)
		return srv;
	/* POP3S listens when a certificate is loaded, on 995 unless set */
	int tls_port = cfg->tls_port >= 0 ? cfg->tls_port : 995;
	for (int pass = 0; pass < 2; pass++) {
		bool tls = pass == 1;
		if (tls && (!tls_available() || tls_port == 0))
			break;
		for (size_t i = 0; cfg->listen[i] != NULL; i++) {
			int port = tls ? tls_port : cfg->port;
			int fd = listen_tcp("Listen", cfg->listen[i], port, 1024, err, errlen);
			if (fd < 0) {
				server_free(srv);
				return NULL;
			}
			add_fd(srv, fd, tls);
		}
	}
	return srv;
}

static void refuse(int fd, const char *why)
{
	char msg[128];
	int len = snprintf(msg, sizeof msg, "-ERR [SYS/TEMP] %s, try again later\r\n", why);
	(void)!send(fd, msg, (size_t)len, MSG_DONTWAIT | MSG_NOSIGNAL);
	/* What the client sent already (a PROXY header, pipelined commands)
	 * is read first: a close with unread input resets the connection,
	 * and the reset can overtake the reply. */
	char sink[1024];
	for (int i = 0; i < 8 && recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0; i++)
		continue;
	close(fd);
}

/* The client expects TLS on POP3S: plain text would be noise there. */
static void refuse_over_limit(const struct acceptor *a, int fd)
{
	if (a->tls)
		close(fd);
	else
		refuse(fd, "Too many connections");
}

static const struct config *current_config(struct server *srv)
{
	pthread_mutex_lock(&srv->cfg_mutex);
	const struct config *cfg = config_hold(srv->cfg);
	pthread_mutex_unlock(&srv->cfg_mutex);
	return cfg;
}

void server_set_config(struct server *srv, const struct config *cfg)
{
	config_hold(cfg);
	pthread_mutex_lock(&srv->cfg_mutex);
	const struct config *old = srv->cfg;
	srv->cfg = cfg;
	pthread_mutex_unlock(&srv->cfg_mutex);
	config_release(old);
}

/* Counts a new connection against both limits; when one is reached the
 * connection is refused and cfg dropped. */
static bool count_connection(struct acceptor *a, const struct config *cfg, int fd,
			     const struct sockaddr *addr)
{
	if (conn_limit_acquire(addr, cfg->max_connections, cfg->max_connections_per_ip))
		return true;
	log_warn("connection refused: limit reached (MaxConnections %d, "
		 "MaxConnectionsPerIP %d)",
		 cfg->max_connections, cfg->max_connections_per_ip);
	metrics_connection_refused(conn_limit_total() >= (unsigned)cfg->max_connections
					   ? REFUSED_TOTAL_LIMIT : REFUSED_PER_IP_LIMIT);
	refuse_over_limit(a, fd);
	config_release(cfg);
	return false;
}

/* A PROXY header named the client: the connection, counted since accept
 * under the proxy's address, is counted under the client's from now on. */
static void admit_proxied(void *arg, const struct config *cfg, int fd,
			  const struct sockaddr *counted, const struct sockaddr *named,
			  socklen_t named_len)
{
	struct acceptor *a = arg;
	if (!conn_limit_move(counted, named, cfg->max_connections_per_ip)) {
		conn_limit_release(counted);
		log_warn("connection refused: limit reached (MaxConnectionsPerIP %d)",
			 cfg->max_connections_per_ip);
		metrics_connection_refused(REFUSED_PER_IP_LIMIT);
		refuse_over_limit(a, fd);
		config_release(cfg);
		return;
	}
	metrics_connection_accepted();
	handoff_connection(a->loop, cfg, fd, named, named_len, a->tls);
}

/* Every accepted connection counts against the limits from here on, also
 * while it waits for a PROXY header or goes through its TLS handshake. */
static void on_accept(struct evconnlistener *listener, evutil_socket_t fd, struct sockaddr *addr,
		      int addrlen, void *arg)
{
	struct acceptor *a = arg;
	if (__atomic_load_n(&a->srv->stopping, __ATOMIC_RELAXED)) {
		/* accepted between SIGTERM and this loop's listener stopping */
		metrics_connection_refused(REFUSED_SHUTTING_DOWN);
		refuse(fd, "Server shutting down");
		return;
	}
	const struct config *cfg = current_config(a->srv);
	if (!count_connection(a, cfg, fd, addr))
		return;
	/* replies are small and answer requests: do not let Nagle hold them */
	int on = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
	if (cfg->proxy_protocol) {
		proxy_wait_start(&a->proxy_waits, a->loop->base, cfg, fd, addr,
				 (socklen_t)addrlen, admit_proxied, a);
	} else {
		metrics_connection_accepted();
		handoff_connection(a->loop, cfg, fd, addr, (socklen_t)addrlen, a->tls);
	}
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
			a->tls = srv->fd_tls[f];
			a->listener = evconnlistener_new(loop->base, on_accept, a,
							 LEV_OPT_CLOSE_ON_EXEC, -1, srv->fds[f]);
			if (a->listener == NULL)
				log_fatal("libevent: cannot listen on socket %d", srv->fds[f]);
			evconnlistener_set_error_cb(a->listener, on_accept_error);
		}
	}
	/* before any loop accepts: every connection takes the same way */
	handoff_start(srv->loops, srv->nloops);
	for (size_t l = 0; l < srv->nloops; l++)
		ioloop_start_thread(srv->loops[l]);
}

/* On each loop's own thread: stop accepting, end the idle sessions. */
static void loop_shutdown(evutil_socket_t fd, short what, void *arg)
{
	struct acceptor *first = arg; /* this loop's acceptors, nfds of them */
	struct server *srv = first->srv;
	for (size_t f = 0; f < srv->nfds; f++) {
		evconnlistener_disable(first[f].listener);
		proxy_wait_close_all(&first[f].proxy_waits);
	}
	session_shutdown_all(first->loop);
}

void server_shutdown(struct server *srv)
{
	static const struct timeval now = {0, 0};
	__atomic_store_n(&srv->stopping, true, __ATOMIC_RELAXED);
	handoff_shutdown();
	for (size_t l = 0; l < srv->nloops; l++)
		event_base_once(srv->loops[l]->base, -1, EV_TIMEOUT, loop_shutdown,
				&srv->acceptors[l * srv->nfds], &now);
}

void server_stop(struct server *srv)
{
	for (size_t l = 0; l < srv->nloops; l++)
		ioloop_stop(srv->loops[l]);
	for (size_t l = 0; l < srv->nloops; l++)
		ioloop_join(srv->loops[l]);
	/* after the I/O loops: nothing hands a connection over any more */
	handoff_stop();
}

void server_free(struct server *srv)
{
	for (size_t i = 0; i < srv->nloops * srv->nfds; i++)
		if (srv->acceptors && srv->acceptors[i].listener)
			evconnlistener_free(srv->acceptors[i].listener);
	for (size_t f = 0; f < srv->nfds; f++)
		close(srv->fds[f]);
	free(srv->fds);
	free(srv->fd_tls);
	free(srv->acceptors);
	config_release(srv->cfg);
	pthread_mutex_destroy(&srv->cfg_mutex);
	free(srv->loops);
	free(srv);
}

struct ioloop *const *server_loops(const struct server *srv, size_t *n_r)
{
	*n_r = srv->nloops;
	return srv->loops;
}

bool server_accepting(struct server *srv)
{
	if (__atomic_load_n(&srv->stopping, __ATOMIC_RELAXED))
		return false;
	const struct config *cfg = current_config(srv);
	bool room = conn_limit_total() < (unsigned)cfg->max_connections;
	config_release(cfg);
	return room;
}
