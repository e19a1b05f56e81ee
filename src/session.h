/* One POP3 connection: its state, shared by session.c (I/O, timers,
 * dispatch), session_life.c (its jobs, waits and end: the only code that
 * changes s->wait and s->jobs), pop3_auth.c and pop3_sasl.c
 * (AUTHORIZATION), pop3_trans.c (TRANSACTION and UPDATE) and pop3_stream.c
 * (RETR/TOP output). Lives on one I/O thread: nothing else touches it. */
#ifndef TPOPS_SESSION_H
#define TPOPS_SESSION_H
#include <event2/event.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#include "config.h"
#include "db.h"
#include "maildrop.h"
#include "pop3_out.h"
#include "pop3_parse.h"
#include "worker.h"
#include "session_life.h"
#include "pop3.h"

struct ioloop;
struct bufferevent;
struct pop3_stream;
struct pop3_attempt;

enum session_state {
	STATE_AUTHORIZATION,
	STATE_TRANSACTION,
	STATE_UPDATE,
};

struct session {
	struct session *prev, *next; /* in loop->sessions */
	struct ioloop *loop;
	const struct config *cfg;
	struct bufferevent *bev;
	struct sockaddr_storage peer;
	char peer_text[64];
	uint64_t id;
	time_t started;

	enum session_state state;
	enum session_wait wait;
	bool closing;     /* no more commands; freed once jobs and output are done */
	bool input_eof;   /* the client closed its side */
	bool peer_gone;   /* writing is pointless */
	bool discarding;  /* inside an overlong line */
	size_t junk;      /* octets of the overlong line so far */
	unsigned bad_commands;
	unsigned jobs;    /* jobs in flight (the session outlives none of them) */
	unsigned processing; /* inside session_process: not freed under it */

	bool tls;          /* POP3S, or after STLS */
	bool tls_closed;   /* close_notify sent */
	struct sasl *sasl; /* an AUTH exchange in progress */
	bool sasl_waiting; /* the next line is a SASL response, not a command */

	struct pop3_attempt *attempt; /* a login being checked (pop3_auth.c) */
	char apop_timestamp[128];
	char *user_arg;   /* from USER */
	struct user user; /* after login */
	char lock_owner[128];
	bool locked;

	struct maildrop *maildrop; /* NULL while QUIT's commit job holds it */
	size_t messages; /* in the maildrop at login (tpops-admin who) */
	bool *deleted;
	bool *retrieved;

	struct pop3_stream *stream; /* RETR/TOP and read-ahead (pop3_stream.c) */

	struct event *command_timer;
	struct event *session_timer;
	struct event *delay_timer; /* the failed-login delay */
	void (*delay_over)(struct session *s);
	void (*hold_cancel)(struct session *s); /* a login hold (pop3_auth.c) */
	struct event *lease_timer;
	struct event *flush_timer; /* the free at the loop's next turn: see session_maybe_free */

	/* counts for the logout line */
	unsigned retr_count;
	uint64_t retr_octets;
	unsigned dele_count;
	uint64_t dele_octets;
};

/* Starts a session on an accepted socket, counted in conn_limit already;
 * with implicit_tls (POP3S) the TLS handshake comes first. The session
 * takes over a reference to cfg (config_hold). */
void session_start(struct ioloop *loop, const struct config *cfg, int fd,
		   const struct sockaddr *addr, socklen_t addrlen, bool implicit_tls);

/* The same for a POP3S connection whose TLS handshake is done (handoff.c);
 * the session takes over ssl. */
void session_start_established(struct ioloop *loop, const struct config *cfg, int fd,
			       const struct sockaddr *addr, socklen_t addrlen, SSL *ssl);

/* STLS (session_stls.c), after its +OK: everything the client sent after
 * the command is discarded (it was sent in the clear); once the +OK is
 * sent the socket goes to a handshake thread, and the session continues
 * inside TLS when it comes back. */
void session_start_tls(struct session *s);
/* For session.c: everything sent in the clear has left (WAIT_TLS_FLUSH). */
void session_stls_flushed(struct session *s);
/* Frees the session's bufferevent and serves it through bev instead. */
void session_replace_bev(struct session *s, struct bufferevent *bev);

/* Replies. reply_err counts towards the bad-command limit. */
__attribute__((format(printf, 2, 3))) void reply_ok(struct session *s, const char *fmt, ...);
__attribute__((format(printf, 2, 3))) void reply_err(struct session *s, const char *fmt, ...);
void reply_raw(struct session *s, const char *data, size_t len);

void session_command_timer_reset(struct session *s);

/* SIGTERM, on the loop's thread: idle sessions get -ERR [SYS/TEMP] and
 * close; a session committing its QUIT finishes first. */
void session_shutdown_all(struct ioloop *loop);

/* For session_life.c: reads and runs the commands that are complete,
 * while the session waits for nothing. */
void session_process(struct session *s);
/* Frees the session; only session_life.c calls it, with no job in flight. */
void session_free(struct session *s);

#endif
