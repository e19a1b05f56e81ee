/* I/O threads: one libevent loop each. Sockets live here; results of
 * storage jobs are posted back here. */
#ifndef TPOPS_IOLOOP_H
#define TPOPS_IOLOOP_H
#include <pthread.h>
#include <sys/time.h>

struct job;
struct event_base;
struct session;

struct ioloop {
	struct event_base *base;
	pthread_t thread;
	pthread_t runner; /* the thread that runs the loop (its sessions' owner) */
	pthread_mutex_t mutex;
	struct job *done_head, *done_tail;
	struct event *wakeup;
	const struct timeval *command_timeout; /* libevent common timeout */
	unsigned index;
	struct session *sessions; /* this loop's sessions (for shutdown) */
};

/* Makes libevent thread-aware; call once before creating any loop. */
void ioloop_global_init(void);
struct ioloop *ioloop_new(unsigned index);
void ioloop_free(struct ioloop *loop);
void ioloop_start_thread(struct ioloop *loop);
/* From any thread: run job->done on the loop's thread. */
void ioloop_post(struct ioloop *loop, struct job *job);
/* From any thread: make the loop return once its events are done. */
void ioloop_stop(struct ioloop *loop);
void ioloop_join(struct ioloop *loop);

#endif
