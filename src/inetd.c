/* inetd mode: one session on standard input and output. */
#include "inetd.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn_limit.h"
#include "handoff.h"
#include "ioloop.h"
#include "log.h"
#include "session.h"
#include "worker.h"

/* Copies from one descriptor to another until end of input, then ends
 * the writing side so that the reader on the other end sees EOF. */
struct pump {
	int from, to;
	bool to_is_socket;
};

static void *pump_main(void *arg)
{
	struct pump *p = arg;
	char buf[65536];
	for (;;) {
		ssize_t n = read(p->from, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(p->to, buf + off, (size_t)(n - off));
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				goto done;
			off += w;
		}
	}
done:
	if (p->to_is_socket)
		shutdown(p->to, SHUT_WR);
	else
		close(p->to);
	return NULL;
}

static void check_done(evutil_socket_t fd, short what, void *arg)
{
	if (conn_limit_total() == 0)
		event_base_loopexit(arg, NULL);
}

int inetd_serve(const struct config *cfg)
{
	pthread_t output_relay;
	bool relaying = false;
	struct sockaddr_storage peer = {.ss_family = AF_UNSPEC};
	socklen_t peer_len = sizeof peer;
	int type = 0;
	socklen_t type_len = sizeof type;
	int fd;
	if (getsockopt(STDIN_FILENO, SOL_SOCKET, SO_TYPE, &type, &type_len) == 0 &&
	    type == SOCK_STREAM) {
		/* the usual case: inetd hands over the connected socket */
		fd = STDIN_FILENO;
		if (getpeername(fd, (struct sockaddr *)&peer, &peer_len) != 0)
			peer.ss_family = AF_UNSPEC;
	} else {
		/* pipes (a test, ssh, a tunnel): relay them through a socket
		 * pair, because the event loop needs one full-duplex socket */
		int sp[2];
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0)
			log_fatal("inetd: socketpair: %s", strerror(errno));
		static struct pump in, out;
		in = (struct pump){STDIN_FILENO, sp[1], true};
		out = (struct pump){sp[1], STDOUT_FILENO, false};
		pthread_t t1;
		if (pthread_create(&t1, NULL, pump_main, &in) != 0 ||
		    pthread_create(&output_relay, NULL, pump_main, &out) != 0)
			log_fatal("inetd: cannot start relay threads");
		pthread_detach(t1); /* may wait on stdin forever; exit ends it */
		relaying = true;
		fd = sp[0];
	}
	evutil_make_socket_nonblocking(fd);

	worker_pool_start(cfg, 2, false);
	struct ioloop *loop = ioloop_new(0);
	struct timeval timeout = {cfg->command_timeout, 0};
	loop->command_timeout = event_base_init_common_timeout(loop->base, &timeout);
	handoff_start(&loop, 1); /* a thread for the TLS handshake after STLS */
	conn_limit_acquire((struct sockaddr *)&peer, 1, 1);
	session_start(loop, config_hold(cfg), fd, (struct sockaddr *)&peer, sizeof peer, false);
	struct event *watch = event_new(loop->base, -1, EV_PERSIST, check_done, loop->base);
	struct timeval tick = {0, 20 * 1000};
	event_add(watch, &tick);
	event_base_dispatch(loop->base);
	event_free(watch);
	handoff_stop();
	worker_pool_stop();
	ioloop_free(loop);
	/* the session's socket is closed: the relay sees EOF once it has
	 * written everything to stdout */
	if (relaying)
		pthread_join(output_relay, NULL);
	return 0;
}
