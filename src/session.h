/* One POP3 connection: its state machine, shared by session.c (I/O,
 * timers, dispatch), pop3_auth.c (AUTHORIZATION) and pop3_trans.c
 * (TRANSACTION and UPDATE). Lives on one I/O thread. */
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

struct ioloop;
struct bufferevent;
struct chunk_job;
struct pop3_attempt;

enum session_state {
	STATE_AUTHORIZATION,
	STATE_TRANSACTION,
	STATE_UPDATE,
};

/* Why the session does not read its next command right now. */
enum session_wait {
	WAIT_NONE,       /* ready for the next command */
	WAIT_JOB,        /* a storage job of this session is running */
	WAIT_AUTH_DELAY, /* a failed login is being slowed down */
	WAIT_STREAM,     /* RETR/TOP output in progress */
	WAIT_OUTPUT,     /* too much unread output: wait for the client */
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

	struct maildrop *maildrop;
	bool *deleted;
	bool *retrieved;

	struct {
		size_t index;
		uint64_t offset;
		struct pop3_out filter;
		bool first;     /* no octet sent yet: an error can still be -ERR */
		bool fetching;  /* a chunk job is in flight */
		bool on_worker; /* a piece was not in memory: read on a worker */
		bool top;
	} stream;

	/* SQL stores: the message after the one just retrieved, read while
	 * the client takes that one in (pop3_stream.c) */
	struct {
		struct chunk_job *job; /* read and waiting, or NULL */
		size_t index;
		bool in_flight;
		bool adopted; /* a RETR waits for the one in flight */
	} ahead;

	struct event *command_timer;
	struct event *session_timer;
	struct event *delay_timer;
	struct event *lease_timer;
	struct event *flush_timer; /* closing after STLS: see session_maybe_free */

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

/* STLS: everything the client sent after the command is discarded (it was
 * sent in the clear), and the connection continues inside TLS. */
int session_start_tls(struct session *s);

/* Replies. reply_err counts towards the bad-command limit. */
__attribute__((format(printf, 2, 3))) void reply_ok(struct session *s, const char *fmt, ...);
__attribute__((format(printf, 2, 3))) void reply_err(struct session *s, const char *fmt, ...);
void reply_raw(struct session *s, const char *data, size_t len);

/* Submits a storage job for this session; `done` runs on the session's
 * loop. The session waits (no further commands) when `blocking`. */
struct session_job {
	struct job job;
	struct session *session;
	void (*work)(struct session_job *sj);
	void (*finish)(struct session_job *sj);
};
void session_submit(struct session *s, struct session_job *sj, bool blocking);
/* For work that was done on the loop's thread without blocking: finish
 * runs at the loop's next turn, as after a worker (never from inside the
 * caller, which may be in the middle of a command). */
void session_finish_here(struct session *s, struct session_job *sj);
/* Call at the end of a job's finish: resumes reading commands. */
void session_resume(struct session *s);

/* Ends the session after the queued output: the lock is released and
 * nothing is deleted unless QUIT committed first. */
void session_close(struct session *s, const char *reason);

void session_command_timer_reset(struct session *s);

/* SIGTERM, on the loop's thread: idle sessions get -ERR [SYS/TEMP] and
 * close; a session committing its QUIT finishes first. */
void session_shutdown_all(struct ioloop *loop);

/* AUTHORIZATION (pop3_auth.c, pop3_sasl.c) and TRANSACTION (pop3_trans.c). */
bool pop3_auth_dispatch(struct session *s, const struct pop3_command *c);

enum login_method {
	LOGIN_USER_PASS,      /* USER/PASS: check the password */
	LOGIN_APOP,           /* secret is the APOP digest */
	LOGIN_SASL_PASSWORD,  /* SASL PLAIN/LOGIN: check the password */
	LOGIN_SASL_VERIFIED,  /* SASL CRAM-MD5/SCRAM already proved it */
};
/* Runs the login job: user lookup, credential check, lock, maildrop. */
void pop3_login_start(struct session *s, enum login_method method, const char *mechanism,
		      const char *login, size_t login_len, const char *secret, size_t secret_len);
/* The brute-force gate before a credential check: go(s, arg) runs once the
 * attempt's slot in the records of auth_penalty.h is taken (at once, or
 * after a hold during which the session reads nothing); when the session
 * closes during the hold, cancel(arg) runs instead and nothing is checked.
 * In a SASL exchange whose check began already, go runs at once. */
void pop3_attempt_gate(struct session *s, const char *login, size_t login_len,
		       void (*go)(struct session *s, void *arg), void (*cancel)(void *arg),
		       void *arg);
/* Ends the session's attempt without a verdict (an abandoned exchange, a
 * database failure, the session's end). */
void pop3_attempt_abandon(struct session *s);
/* A failed login: logged, answered with -ERR [AUTH] after the growing delay. */
void pop3_login_failed(struct session *s, const char *login, const char *method,
		       const char *reason);
/* False when RequireTLS forbids authentication on this connection now. */
bool pop3_auth_allowed(const struct session *s);
void pop3_auth_command(struct session *s, const struct pop3_command *c);
void pop3_sasl_response(struct session *s, const char *line, size_t len);
bool pop3_trans_dispatch(struct session *s, const struct pop3_command *c);
void pop3_capa(struct session *s);
void pop3_trans_begin(struct session *s);
void pop3_stream_start(struct session *s, uint32_t n, int64_t top_lines);
void pop3_stream_resume(struct session *s);
void pop3_stream_free(struct session *s);
void pop3_release_lock(struct session *s);
/* Timer callbacks: the end of a failed login's delay; the lease renewal. */
void pop3_auth_delay_over(evutil_socket_t fd, short what, void *arg);
void pop3_lease_tick(evutil_socket_t fd, short what, void *arg);

#endif
