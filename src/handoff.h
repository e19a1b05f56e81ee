/* Where an accepted connection is served, and where TLS handshakes run.
 * Every TLS handshake -- of a POP3S connection right after accept, and of
 * a session after STLS -- runs on handshake threads of their own, which
 * run at a lower scheduling priority than the I/O threads: a storm of new
 * connections then takes CPU from the logged-in sessions only when those
 * leave some. Every connection (plain, or TLS once established) goes to
 * the next I/O loop in turn, so that a burst of connections accepted by
 * one loop is spread over all of them. */
#ifndef TPOPS_HANDOFF_H
#define TPOPS_HANDOFF_H
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config.h"
#include "worker.h"

struct ioloop;
struct event;
struct handshaker;

enum handshake_result {
	HANDSHAKE_DONE,    /* established */
	HANDSHAKE_FAILED,  /* an alert, a closed connection, garbage, the deadline */
	HANDSHAKE_STOPPED, /* the server is shutting down */
};

/* One TLS handshake on a handshake thread. handoff.c's own, except where
 * said; lives inside the structure of whoever asked for it. */
struct handshake {
	struct job job; /* posted to the handshake thread */
	int fd;
	SSL *ssl; /* made on the handshake thread; NULL if that failed */
	int64_t deadline_ms; /* CLOCK_MONOTONIC */
	int limit_s;         /* for the log: the whole time it had */
	struct event *ev;
	struct handshaker *hs;
	struct handshake *prev, *next; /* in hs->pending */
	/* On the handshake thread, once, when it is over; the fd and the SSL
	 * are still the asker's. */
	void (*over)(struct handshake *h, enum handshake_result result, const char *failure);
};

/* STLS: the handshake of an existing session on a handshake thread. */
struct tls_upgrade {
	struct handshake h;
	struct job *back; /* posted to back->loop when the handshake is over */
	enum handshake_result result;
	char failure[256]; /* why, unless HANDSHAKE_DONE */
};

/* Starts one handshake thread per I/O loop; loops are the I/O loops that
 * serve sessions (kept, not copied). */
void handoff_start(struct ioloop **loops, size_t nloops);
/* On the I/O loop `here` that accepted fd, counted in conn_limit: the
 * connection's session starts on some loop, after the TLS handshake when
 * tls. Takes over cfg's reference and the fd. */
void handoff_connection(struct ioloop *here, const struct config *cfg, int fd,
			const struct sockaddr *addr, socklen_t addrlen, bool tls);
/* From an I/O loop: runs the server side of a TLS handshake on fd (the
 * socket; nothing else watches it meanwhile) within limit_ms on a
 * handshake thread, then posts u->back with the result. The fd stays the
 * caller's; so does u->h.ssl (the connection, or NULL) once back runs.
 * False when there are no handshake threads (handoff_start not called). */
bool handoff_tls_upgrade(struct tls_upgrade *u, int fd, int64_t limit_ms, struct job *back);
/* SIGTERM: handshakes in progress end (HANDSHAKE_STOPPED), and so do
 * those that arrive. */
void handoff_shutdown(void);
/* Joins the handshake threads. */
void handoff_stop(void);

#endif
