/* The administration thread: an event loop of its own for the metrics
 * listener (GET /metrics, GET /health; metrics_http.c) and the control
 * socket of tpops-admin (control.c), so that neither ever slows an I/O
 * thread. Both sockets are made as root, before privileges are dropped. */
#ifndef TPOPS_ADMIN_H
#define TPOPS_ADMIN_H
#include <pthread.h>
#include <stdbool.h>
#include <sys/types.h>

#include "buf.h"
#include "config.h"
#include "metrics.h"

struct event_base;
struct evconnlistener;
struct evhttp;
struct server;

/* A reload (SIGHUP's), run on the main thread: true when the new
 * configuration is in force; report says what happened, line by line. */
typedef bool (*admin_reload_fn)(void *arg, struct buf *report);

struct admin {
	const struct config *cfg; /* the start-up configuration */
	int control_fd, metrics_fd;
	bool metrics_unix;
	struct server *srv;
	struct event_base *main_base;
	admin_reload_fn reload;
	void *reload_arg;
	uid_t daemon_uid; /* besides root, the one user the control socket serves */
	/* the administration thread's own */
	struct event_base *base;
	pthread_t thread;
	bool started;
	bool stopping; /* set by admin_free: long waits give up (atomic) */
	struct evhttp *http;
	struct evconnlistener *control;
};

/* As root, before privileges are dropped: creates the control socket
 * (owner root, group Group, mode 0660) and the metrics listener. NULL with
 * a message when one cannot be made. */
struct admin *admin_bind(const struct config *cfg, char *err, size_t errlen);
/* After the I/O threads started: counting starts, and the thread serves. */
void admin_start(struct admin *a, struct server *srv, struct event_base *main_base,
		 admin_reload_fn reload, void *reload_arg);
/* Stops the thread and closes the sockets; the control socket's file is
 * left (the daemon may no longer remove it) and replaced at the next start. */
void admin_free(struct admin *a);

/* What the I/O threads, the limits and the database probe say now; on
 * the administration thread. why: what makes the daemon unhealthy. */
void admin_live(struct admin *a, struct metrics_live *live, char *why, size_t whylen);

/* Set up by control.c and metrics_http.c on the administration thread. */
int control_serve(struct admin *a);
int metrics_http_serve(struct admin *a);

#endif
