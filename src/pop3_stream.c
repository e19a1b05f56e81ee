/* RETR and TOP: a message streams out in pieces of RETR_CHUNK_SIZE, each
 * read and converted to the wire form (CRLF, dot-stuffing, the TOP cut) by
 * a storage worker, or right on the I/O thread when the store can read it
 * from memory without waiting (read_nowait) and the session is not TLS.
 * For stores whose every read blocks (SQL), the message after the one just
 * retrieved is read ahead while the client takes in this one: clients
 * fetch in order.
 *
 * A piece job on a worker touches only what it owns: the message's reader
 * (maildrop.h) and the output filter's state are handed to it, out of the
 * stream, and handed back by its finish; it never reads the session's
 * maildrop, which the session goes on using meanwhile (commands after a
 * read-ahead was started, a QUIT after a client left in the middle of a
 * piece). What it still shares is read-only for the daemon's life: the
 * maildrop's ops table. */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <assert.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "session.h"
#include "tpops_limits.h"
#include "worker.h"
#include "xalloc.h"

/* A stream's state, kept out of struct session (which holds a pointer). */
struct pop3_stream {
	size_t index;
	uint64_t offset;
	struct pop3_out filter; /* lent to the piece in flight, given back by it */
	/* The message's reader between pieces; NULL while the piece in
	 * flight has it, and before the first piece and after the last */
	struct maildrop_reader *reader;
	bool first;     /* no octet sent yet: an error can still be -ERR */
	bool fetching;  /* a piece is in flight */
	bool on_worker; /* a piece was not in memory: read on a worker */
	bool top;
	bool abandoned; /* the client is gone: the piece in flight is dropped */
	/* SQL stores: the message after the one just retrieved, read while
	 * the client takes that one in */
	struct {
		struct chunk_job *job; /* read and waiting, or NULL */
		size_t index;
		bool in_flight;
		bool adopted; /* a RETR waits for the one in flight */
	} ahead;
};

/* A piece of a message: the worker reads and converts it with the job's
 * own copy of the filter state, which the finish hands back. */
struct chunk_job {
	struct session_job sj;
	struct maildrop_reader *reader; /* the job's until its finish */
	size_t index;
	uint64_t offset;
	struct pop3_out filter;
	size_t reserved; /* read-ahead octets counted in ahead_total */
	char *out;
	size_t out_len;
	uint64_t consumed;
	bool end;
	int status;
	char error[256];
};

/* Octets that read-ahead holds or has asked for, over all sessions: past
 * READ_AHEAD_TOTAL_MAX nothing more is read ahead (idle clients do not
 * get to pin memory). */
static atomic_size_t ahead_total;

/* Reads and converts the next piece: with db on a worker, or without
 * (db NULL) on the I/O thread through read_nowait, which may answer
 * DB_AGAIN and leave everything as it was. */
static void chunk_fill(struct chunk_job *cj, struct db *db)
{
	const struct maildrop_ops *ops = cj->reader->ops;
	/* room for the final ".\r\n" when the raw piece goes out as is */
	char *raw = xmalloc(RETR_CHUNK_SIZE + POP3_OUT_FINISH_MAX);
	size_t got = 0;
	if (db != NULL)
		cj->status = ops->read(cj->reader, db, cj->offset, raw, RETR_CHUNK_SIZE, &got,
				       cj->error, sizeof cj->error);
	else
		cj->status = ops->read_nowait(cj->reader, cj->offset, raw, RETR_CHUNK_SIZE, &got);
	if (cj->status == DB_OK) {
		if (pop3_out_passthrough(&cj->filter, raw, got)) {
			cj->out = raw; /* CRLF already, nothing to stuff: no copy */
			cj->out_len = got;
			raw = NULL;
		} else {
			cj->out = xmalloc(POP3_OUT_MAX(got) + POP3_OUT_FINISH_MAX);
			cj->out_len = pop3_out_feed(&cj->filter, raw, got, cj->out);
		}
		cj->consumed = got;
		/* a short read is the last one (the maildrop_ops contract):
		 * the message ends in this job, without one more hand-off */
		if (got < RETR_CHUNK_SIZE || pop3_out_done(&cj->filter)) {
			cj->out_len += pop3_out_finish(&cj->filter, cj->out + cj->out_len);
			cj->end = true;
		}
	}
	free(raw);
}

static void chunk_work(struct session_job *sj)
{
	struct chunk_job *cj = (struct chunk_job *)sj;
	struct db *db = worker_db(cj->error, sizeof cj->error);
	if (db == NULL) {
		cj->status = DB_TEMPFAIL;
		return;
	}
	chunk_fill(cj, db);
	if (cj->status == DB_TEMPFAIL)
		worker_db_discard();
}

static void free_chunk(const void *data, size_t len, void *arg)
{
	free((void *)data);
}

/* On the session's thread: a reader the stream is done with. The maildrop
 * learns what the read found out (a message's new name), unless a QUIT's
 * commit holds it (s->maildrop NULL meanwhile). */
static void reader_release(struct session *s, struct maildrop_reader *r)
{
	if (r != NULL)
		r->ops->reader_free(s->maildrop, r);
}

static void chunk_job_free(struct chunk_job *cj)
{
	reader_release(cj->sj.session, cj->reader);
	if (cj->reserved > 0)
		atomic_fetch_sub(&ahead_total, cj->reserved);
	free(cj->out);
	free(cj);
}

static void chunk_discard(struct session_job *sj)
{
	chunk_job_free((struct chunk_job *)sj);
}

static struct pop3_stream *stream_of(struct session *s)
{
	if (s->stream == NULL)
		s->stream = xcalloc(1, sizeof *s->stream);
	return s->stream;
}

static void stream_fetch(struct session *s);
static void read_ahead(struct session *s, size_t index);

static void chunk_finish(struct session_job *sj)
{
	struct chunk_job *cj = (struct chunk_job *)sj;
	struct session *s = sj->session;
	struct pop3_stream *st = s->stream;
	st->fetching = false;
	if (st->abandoned) { /* the client left: nobody waits for it */
		st->abandoned = false;
		chunk_job_free(cj);
		return;
	}
	/* the session waits for this stream: no QUIT took the maildrop */
	assert(s->maildrop != NULL && st->reader == NULL);
	struct maildrop_msg *m = &s->maildrop->msgs[cj->index];
	if (cj->status != DB_OK) {
		log_error("user=%s: reading message %zu: %s", s->user.login, cj->index + 1,
			  cj->error);
		int status = cj->status;
		chunk_job_free(cj);
		if (st->first) {
			if (status == DB_NOT_FOUND)
				reply_err(s, "Message %zu is gone", st->index + 1);
			else
				reply_err(s, "[SYS/TEMP] Cannot read the message, try again later");
			session_resume(s);
		} else { /* part of it is sent: the only honest end is to hang up */
			session_close(s, "read error in the middle of a message");
		}
		return;
	}
	st->filter = cj->filter; /* handed back, with the reader for the next piece */
	if (!cj->end) {
		st->reader = cj->reader;
		cj->reader = NULL;
	}
	if (st->first) {
		st->first = false;
		if (st->top)
			reply_ok(s, "Top of message follows");
		else
			reply_ok(s, "%llu octets", (unsigned long long)m->size);
	}
	st->offset += cj->consumed;
	struct evbuffer *out = bufferevent_get_output(s->bev);
	if (cj->out_len > 0) {
		evbuffer_add_reference(out, cj->out, cj->out_len, free_chunk, NULL);
		cj->out = NULL;
	}
	bool end = cj->end;
	chunk_job_free(cj);
	if (end) {
		if (!st->top) {
			s->retrieved[st->index] = true;
			s->retr_count++;
			s->retr_octets += m->size;
			metrics_message_retrieved(m->size);
			/* before the next command: it may be the RETR of this one */
			read_ahead(s, st->index + 1);
		}
		session_resume(s);
		return;
	}
	/* Keep one piece ahead of the socket; else the write callback asks
	 * for the next piece once the output drains to RETR_LOW_WATER. */
	if (evbuffer_get_length(out) < 2 * RETR_CHUNK_SIZE)
		stream_fetch(s);
}

static struct chunk_job *chunk_job_new(struct session *s, size_t index, uint64_t offset)
{
	struct chunk_job *cj = xcalloc(1, sizeof *cj);
	cj->sj.work = chunk_work;
	cj->sj.finish = chunk_finish;
	cj->sj.discard = chunk_discard;
	cj->sj.job.kind = JOB_RETR_PIECE;
	cj->sj.session = s; /* for chunk_job_free before the job is submitted */
	cj->index = index;
	cj->offset = offset;
	return cj;
}

/* A message that goes out in one piece: over TLS too it is read right
 * here, since handing it to a worker and back costs more than reading
 * and converting it (1,000 messages of 100 KiB on one POP3S connection). */
static bool stream_is_small(const struct session *s)
{
	const struct pop3_stream *st = s->stream;
	return st->offset == 0 && s->maildrop->msgs[st->index].raw_size < RETR_CHUNK_SIZE;
}

static void stream_fetch(struct session *s)
{
	struct pop3_stream *st = s->stream;
	struct chunk_job *cj = chunk_job_new(s, st->index, st->offset);
	cj->filter = st->filter; /* lent to the job */
	if (st->reader == NULL) /* the message's first piece */
		st->reader = s->maildrop->ops->reader_new(s->maildrop, st->index);
	cj->reader = st->reader; /* handed over: the stream keeps no pointer to it */
	st->reader = NULL;
	st->fetching = true;
	/* What the page cache holds is read right here: a worker hand-off
	 * costs more than reading 256 KiB from memory. Not over TLS: there
	 * this thread also encrypts every octet, and with several streams
	 * per I/O thread it is the bottleneck; a worker reads and converts
	 * the next piece on another core meanwhile (8 POP3S connections of
	 * 10 MiB from Maildir: about a quarter more, docs/BENCHMARKS.md). */
	if (s->maildrop->ops->read_nowait != NULL && (!s->tls || stream_is_small(s))) {
		chunk_fill(cj, NULL);
		if (cj->status != DB_AGAIN) {
			session_finish_here(s, &cj->sj);
			return;
		}
		if (!st->on_worker) { /* once per message */
			st->on_worker = true;
			log_debug("user=%s: message %zu from octet %llu is not in memory: read on a "
				  "storage worker",
				  s->user.login, cj->index + 1, (unsigned long long)cj->offset);
		}
	}
	session_submit(s, &cj->sj, false);
}

void pop3_stream_resume(struct session *s)
{
	if (s->wait == WAIT_STREAM && !s->stream->fetching)
		stream_fetch(s);
}

void pop3_stream_abandon(struct session *s)
{
	struct pop3_stream *st = s->stream;
	reader_release(s, st->reader); /* between pieces: nobody reads on */
	st->reader = NULL;
	if (st->ahead.adopted) { /* the read-ahead it waited for is kept as such */
		st->ahead.adopted = false;
		st->fetching = false;
	} else if (st->fetching) {
		st->abandoned = true;
	}
}

/* ---- read-ahead ---- */

/* A read-ahead came back: kept for the RETR that will want it, handed to
 * the RETR that is already waiting for it, or dropped. */
static void ahead_finish(struct session_job *sj)
{
	struct chunk_job *cj = (struct chunk_job *)sj;
	struct session *s = sj->session;
	struct pop3_stream *st = s->stream;
	st->ahead.in_flight = false;
	if (st->ahead.adopted) { /* that RETR has come: go on as its first piece */
		st->ahead.adopted = false;
		chunk_finish(sj);
		return;
	}
	/* on an error the RETR reads again itself, and reports what it gets */
	if (cj->status != DB_OK || st->ahead.job != NULL) {
		chunk_job_free(cj);
		return;
	}
	st->ahead.job = cj;
}

/* Stores without read_nowait only: every read blocks there, and their
 * reads leave the maildrop as it is, so that a read-ahead may run beside
 * a RETR or TOP of another message. Messages of one piece only (larger
 * ones stream with a piece in hand anyway). */
static void read_ahead(struct session *s, size_t index)
{
	struct pop3_stream *st = s->stream;
	if (s->maildrop->ops->read_nowait != NULL || st->ahead.in_flight || st->ahead.job != NULL ||
	    index >= s->maildrop->count || s->deleted[index] || s->retrieved[index])
		return;
	uint64_t size = s->maildrop->msgs[index].size;
	if (size >= RETR_CHUNK_SIZE)
		return;
	if (atomic_fetch_add(&ahead_total, size) + size > READ_AHEAD_TOTAL_MAX) {
		atomic_fetch_sub(&ahead_total, size);
		return;
	}
	struct chunk_job *cj = chunk_job_new(s, index, 0);
	cj->sj.finish = ahead_finish;
	cj->reader = s->maildrop->ops->reader_new(s->maildrop, index); /* the job's own */
	cj->reserved = size;
	pop3_out_init(&cj->filter, true, -1);
	st->ahead.in_flight = true;
	st->ahead.index = index;
	session_submit(s, &cj->sj, false);
}

/* RETR of the message read ahead: sent from what is already there, or as
 * soon as it comes. False when there is nothing to use. */
static bool stream_from_ahead(struct session *s)
{
	struct pop3_stream *st = s->stream;
	size_t index = st->index;
	bool ready = st->ahead.job != NULL && st->ahead.index == index;
	if (ready || (st->ahead.in_flight && st->ahead.index == index))
		log_debug("user=%s: message %zu was read ahead (%s)", s->user.login, index + 1,
			  ready ? "ready" : "on its way");
	if (ready) {
		struct chunk_job *cj = st->ahead.job;
		st->ahead.job = NULL;
		cj->sj.finish = chunk_finish;
		st->fetching = true;
		session_finish_here(s, &cj->sj);
		return true;
	}
	if (st->ahead.in_flight && st->ahead.index == index) {
		st->ahead.adopted = true;
		st->fetching = true;
		return true;
	}
	return false;
}

void pop3_stream_start(struct session *s, uint32_t n, int64_t top_lines)
{
	if (s->peer_gone)
		return; /* a RETR sent before the client left: nobody would read it */
	struct pop3_stream *st = stream_of(s);
	assert(!st->fetching && st->reader == NULL);
	st->index = n - 1;
	st->offset = 0;
	st->first = true;
	st->on_worker = false;
	st->top = top_lines >= 0;
	pop3_out_init(&st->filter, true, top_lines);
	session_wait_enter(s, WAIT_STREAM);
	if (!st->top && stream_from_ahead(s))
		return;
	if (st->ahead.job != NULL) { /* read ahead for nothing: let it go */
		chunk_job_free(st->ahead.job);
		st->ahead.job = NULL;
	}
	stream_fetch(s);
}

void pop3_stream_free(struct session *s)
{
	if (s->stream == NULL)
		return;
	reader_release(s, s->stream->reader);
	if (s->stream->ahead.job != NULL)
		chunk_job_free(s->stream->ahead.job);
	free(s->stream);
	s->stream = NULL;
}
