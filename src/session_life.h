/* The one owner of a session's lifetime: its jobs, its waits and its end
 * (session_life.c). The rules it keeps, checked by asserts:
 *   - s->wait and s->jobs change here only; a session waits for one thing
 *     at a time, and reads no command while it waits;
 *   - a job's work runs on a storage worker and touches only its job:
 *     what it needs is copied or handed over into the job when it is
 *     submitted, and its results are handed back by its finish on the
 *     session's own I/O thread, never written through a pointer into the
 *     session. Handed over, the session holds NULL until the finish
 *     (asserted there): the SASL state (credentials job), the maildrop
 *     and the DELE/RETR marks (QUIT's commit), a message's reader
 *     (a RETR piece, pop3_stream.c), the socket (the STLS handshake on a
 *     handshake thread, session_stls.c). What a job may still point to is
 *     shared read-only and outlives it: the configuration (immutable,
 *     held by the session, config_hold, for its whole life), static
 *     tables (a maildrop's ops, a mechanism's name), and sj->session,
 *     which only finish and discard use, on the session's thread;
 *   - a session is freed only with no job in flight and no hold;
 *   - the end of the client's side (EOF, a socket error, a TLS alert) ends
 *     the session in any wait by one path (session_input_ended): what only
 *     the client was waited for (its reading, the login delay) is
 *     cancelled, a held login is not checked at all, a stream's piece in
 *     flight is abandoned, and
 *     the lock is released as soon as the jobs in flight are back.
 *     Commands the client sent before it left still run (a QUIT sent
 *     before closing still commits), without their output;
 *   - the command (idle) timer runs only while the server waits for the
 *     client: it stops while a job, the login hold or the login delay
 *     keeps the session. */
#ifndef TPOPS_SESSION_LIFE_H
#define TPOPS_SESSION_LIFE_H
#include <event2/util.h>
#include <stdbool.h>

#include "worker.h"

struct session;

/* Why the session does not read its next command right now. */
enum session_wait {
	WAIT_NONE,       /* ready for the next command */
	WAIT_JOB,        /* a storage job of this session is running */
	WAIT_LOGIN_HOLD, /* a login from a penalised address waits before its check */
	WAIT_AUTH_DELAY, /* a failed login is being slowed down */
	WAIT_STREAM,     /* RETR/TOP output in progress */
	WAIT_OUTPUT,     /* too much unread output: wait for the client */
	WAIT_TLS_FLUSH,  /* STLS: the client reads what was sent in the clear */
	WAIT_TLS_HANDSHAKE, /* STLS: the handshake runs on a handshake thread */
};

struct session_job {
	struct job job;
	struct session *session; /* for finish only: work never touches it */
	/* On a worker: touches only the job. */
	void (*work)(struct session_job *sj);
	/* On the session's loop: hands the results to the session, frees sj. */
	void (*finish)(struct session_job *sj);
	/* Optional: frees a job whose session is closing, in place of finish
	 * (a stream's piece or a lookup nobody waits for). Jobs without it
	 * (login, lease, commit) always finish: they may hold the lock. */
	void (*discard)(struct session_job *sj);
	bool blocking; /* the session waits for it (set by session_submit) */
};

/* Submits a storage job; with blocking the session waits (WAIT_JOB, no
 * commands, no idle timer) until its finish calls session_resume. */
void session_submit(struct session *s, struct session_job *sj, bool blocking);
/* For work that was done on the loop's thread without blocking: finish
 * runs at the loop's next turn, as after a worker (never from inside the
 * caller, which may be in the middle of a command). */
void session_finish_here(struct session *s, struct session_job *sj);

/* Enters a wait (WAIT_STREAM, WAIT_OUTPUT, WAIT_TLS_FLUSH; the others
 * have their own calls). The session must wait for nothing else. */
void session_wait_enter(struct session *s, enum session_wait w);
/* Leaves the wait and goes on with the commands that came meanwhile. */
void session_resume(struct session *s);

/* STLS, after WAIT_TLS_FLUSH: the handshake is the blocking job sj, run
 * by a handshake thread (handoff_tls_upgrade), not a storage worker; the
 * caller hands sj->job over to it right after. The idle timer stops (the
 * handshake has its own deadline), and a client that leaves ends the
 * session once the handshake is back. */
void session_tls_handshake_begin(struct session *s, struct session_job *sj);

/* The hold of a login from a penalised address before its check
 * (pop3_auth.c keeps its timer): the session reads nothing, the idle timer
 * stops. If the session ends first, cancel(s) runs at once and must stop
 * that timer. session_hold_leave ends the hold (before the check's job). */
void session_hold_enter(struct session *s, void (*cancel)(struct session *s));
void session_hold_leave(struct session *s);
/* A failed login's delay: over(s) answers after ms, then the session
 * resumes; a client that leaves meanwhile ends the session at once. */
void session_delay(struct session *s, long ms, void (*over)(struct session *s));

/* The client's side ended (EOF, error, TLS alert): see the rules above.
 * With peer_gone set first, nothing more can be sent. */
void session_input_ended(struct session *s);

/* Ends the session after the queued output: the lock is released and
 * nothing is deleted unless QUIT committed first. */
void session_close(struct session *s, const char *reason);
/* Frees the session at the loop's next turn once it is closing and nothing
 * holds it. */
void session_maybe_free(struct session *s);

/* Drops the output not yet sent (the client cannot receive it). */
void session_discard_output(struct session *s);

/* Timer callbacks (session.c creates the timers): the end of the hold or
 * delay, the idle timer (CommandTimeout), the connection's time limit
 * (ConnectionKeepTime), and the check whether a closing session may go. */
void session_delay_timer(evutil_socket_t fd, short what, void *arg);
void session_command_timeout(evutil_socket_t fd, short what, void *arg);
void session_keep_timeout(evutil_socket_t fd, short what, void *arg);
void session_flush_check(evutil_socket_t fd, short what, void *arg);

/* Asserts that the caller runs on the session's own I/O thread. */
void session_assert_owner(const struct session *s);

#endif
