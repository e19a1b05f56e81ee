/* I/O threads: one libevent loop each, with a queue of finished jobs. */
#include "ioloop.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <stdlib.h>

#include "log.h"
#include "worker.h"
#include "xalloc.h"

void ioloop_global_init(void)
{
	if (evthread_use_pthreads() != 0)
		log_fatal("libevent: cannot enable thread support");
}

/* Runs the done callbacks of every job the workers finished for this loop. */
static void ioloop_drain(evutil_socket_t fd, short what, void *arg)
{
	struct ioloop *loop = arg;
	pthread_mutex_lock(&loop->mutex);
	struct job *job = loop->done_head;
	loop->done_head = loop->done_tail = NULL;
	pthread_mutex_unlock(&loop->mutex);
	while (job != NULL) {
		struct job *next = job->next;
		job->done(job);
		job = next;
	}
}

struct ioloop *ioloop_new(unsigned index)
{
	struct ioloop *loop = xcalloc(1, sizeof *loop);
	struct event_config *ec = event_config_new();
	/* only this thread touches the loop's sockets; locking is needed
	 * just for event_active() from the workers */
	loop->base = event_base_new_with_config(ec);
	event_config_free(ec);
	if (loop->base == NULL)
		log_fatal("libevent: cannot create an event loop");
	pthread_mutex_init(&loop->mutex, NULL);
	loop->wakeup = event_new(loop->base, -1, EV_PERSIST, ioloop_drain, loop);
	loop->index = index;
	loop->runner = pthread_self(); /* until a thread of its own runs it */
	return loop;
}

void ioloop_free(struct ioloop *loop)
{
	event_free(loop->wakeup);
	event_base_free(loop->base);
	pthread_mutex_destroy(&loop->mutex);
	free(loop);
}

void ioloop_post(struct ioloop *loop, struct job *job)
{
	job->next = NULL;
	pthread_mutex_lock(&loop->mutex);
	int was_empty = loop->done_head == NULL;
	if (loop->done_tail != NULL)
		loop->done_tail->next = job;
	else
		loop->done_head = job;
	loop->done_tail = job;
	pthread_mutex_unlock(&loop->mutex);
	/* one activation drains everything queued before it runs */
	if (was_empty)
		event_active(loop->wakeup, EV_READ, 0);
}

static void *ioloop_main(void *arg)
{
	struct ioloop *loop = arg;
	loop->runner = pthread_self();
	event_base_loop(loop->base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

void ioloop_start_thread(struct ioloop *loop)
{
	int rc = pthread_create(&loop->thread, NULL, ioloop_main, loop);
	if (rc != 0)
		log_fatal("cannot start I/O thread: error %d", rc);
}

void ioloop_stop(struct ioloop *loop)
{
	event_base_loopexit(loop->base, NULL);
}

void ioloop_join(struct ioloop *loop)
{
	pthread_join(loop->thread, NULL);
}
