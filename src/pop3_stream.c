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
 * maildrop's ops table.
 *
 * Where the kernel encrypts the session's records (kernel TLS) and the
 * store keeps messages in files (Maildir), a piece that the worker found
 * already in wire form (CRLF, no line to dot-stuff) is not written from
 * the worker's buffer: the I/O thread sends it straight from the file
 * with SSL_sendfile, and the kernel encrypts it from the page cache,
 * which the worker's read has just filled. The buffer is kept until then:
 * where the kernel refuses the file, the piece goes from it after all.
 * The worker reads the next piece meanwhile; it is held until the file's
 * octets are out, and so is the session's next reply. */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <assert.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"
#include "session.h"
#include "tls.h"
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
	/* Kernel TLS and a store of files: pieces in wire form go from the
	 * file (SSL_sendfile); see the top of this file */
	bool from_file;
	struct chunk_job *sending; /* a piece whose file octets go out now */
	struct chunk_job *held;    /* the next piece, back before those are out */
	struct event *writable;    /* the socket takes more, for `sending` */
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
	bool try_file;   /* in wire form, the piece may go from its file */
	char *out;
	size_t out_len;
	/* When the piece goes from the message's file: a descriptor of the
	 * job's own, where out[0] is in it, and how many octets of out are
	 * there (all but the message's end). out is kept until they are sent:
	 * it is the way back if the kernel refuses the file. out_sent: what
	 * of out went from the file so far. */
	int file_fd;
	uint64_t file_offset;
	size_t file_len, out_sent;
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
		/* A CR that ends a full piece may be the first half of a CRLF:
		 * it is left for the next piece, so that this one can still go
		 * as it is */
		size_t as_is = got == RETR_CHUNK_SIZE && raw[got - 1] == '\r' ? got - 1 : got;
		if (pop3_out_passthrough(&cj->filter, raw, as_is)) {
			cj->out = raw; /* CRLF already, nothing to stuff: no copy */
			cj->out_len = as_is;
			cj->consumed = as_is;
			raw = NULL;
			if (cj->try_file && (cj->file_fd = ops->file_dup(cj->reader)) >= 0) {
				cj->file_offset = cj->offset;
				cj->file_len = as_is;
			}
		} else {
			cj->out = xmalloc(POP3_OUT_MAX(got) + POP3_OUT_FINISH_MAX);
			cj->out_len = pop3_out_feed(&cj->filter, raw, got, cj->out);
			cj->consumed = got;
		}
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

/* evbuffer's cleanup of a piece's octets: arg is their whole buffer, of
 * which only a tail may have gone into the output. */
static void free_chunk(const void *data, size_t len, void *arg)
{
	free(arg);
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
	if (cj->file_fd >= 0)
		close(cj->file_fd);
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

static void piece_take(struct session *s, struct chunk_job *cj);
static void stream_send_file(struct session *s);

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
	if (st->sending != NULL) { /* follows the file octets going out now */
		assert(st->held == NULL);
		st->held = cj;
		return;
	}
	piece_take(s, cj);
}

/* Bookkeeping once a piece's octets are out of the stream's hands (queued
 * in the output, or sent from the file): the message's end, or the next
 * piece. Frees cj. */
static void piece_out(struct session *s, struct chunk_job *cj)
{
	struct pop3_stream *st = s->stream;
	struct evbuffer *out = bufferevent_get_output(s->bev);
	if (cj->out_len > cj->out_sent) { /* what did not go from the file */
		evbuffer_add_reference(out, cj->out + cj->out_sent, cj->out_len - cj->out_sent,
				       free_chunk, cj->out);
		cj->out = NULL;
	}
	bool end = cj->end;
	chunk_job_free(cj);
	if (end) {
		if (!st->top) {
			struct maildrop_msg *m = &s->maildrop->msgs[st->index];
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
	if (st->held != NULL) { /* came back while the file's octets went out */
		struct chunk_job *next = st->held;
		st->held = NULL;
		piece_take(s, next);
		return;
	}
	/* Keep one piece ahead of the socket; else the write callback asks
	 * for the next piece once the output drains to RETR_LOW_WATER. */
	if (!st->fetching && evbuffer_get_length(out) < 2 * RETR_CHUNK_SIZE)
		stream_fetch(s);
}

/* A piece, in order: the RETR's first answer, then its octets. */
static void piece_take(struct session *s, struct chunk_job *cj)
{
	struct pop3_stream *st = s->stream;
	/* the session waits for this stream: no QUIT took the maildrop */
	assert(s->maildrop != NULL && st->reader == NULL && st->sending == NULL);
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
	if (cj->file_fd < 0) {
		piece_out(s, cj);
		return;
	}
	st->sending = cj;
	if (!cj->end) /* a worker reads the next piece while this one goes */
		stream_fetch(s);
	stream_send_file(s);
}

static struct chunk_job *chunk_job_new(struct session *s, size_t index, uint64_t offset)
{
	struct chunk_job *cj = xcalloc(1, sizeof *cj);
	cj->sj.work = chunk_work;
	cj->sj.finish = chunk_finish;
	cj->sj.discard = chunk_discard;
	cj->sj.job.kind = JOB_RETR_PIECE;
	cj->sj.session = s; /* for chunk_job_free before the job is submitted */
	cj->file_fd = -1;
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
	cj->try_file = st->from_file; /* what the worker reads is in the page cache after */
	session_submit(s, &cj->sj, false);
}

/* ---- sending from the file ---- */

static void stream_writable(evutil_socket_t fd, short what, void *arg)
{
	pop3_stream_resume(arg);
}

/* Set once the kernel refused to send a message file (the file system
 * cannot, say): from then on RETRs copy, as without kernel TLS. */
static atomic_bool sendfile_refused;

/* The file octets of st->sending, as far as the socket takes them. */
static void stream_send_file(struct session *s)
{
	struct pop3_stream *st = s->stream;
	struct chunk_job *cj = st->sending;
	if (evbuffer_get_length(bufferevent_get_output(s->bev)) > 0)
		return; /* what was queued before goes first: on_write calls again */
	uint64_t offset = cj->file_offset + cj->out_sent;
	uint64_t left = cj->file_len - cj->out_sent;
	bool peer_gone = false;
	char err[256] = "";
	enum tls_sendfile_result r = TLS_SENDFILE_REFUSED;
	if (!atomic_load_explicit(&sendfile_refused, memory_order_relaxed))
		r = tls_sendfile(bufferevent_openssl_get_ssl(s->bev), cj->file_fd, &offset, &left,
				 RETR_CHUNK_SIZE, &peer_gone, err, sizeof err);
	size_t went = (size_t)(cj->file_len - cj->out_sent - left);
	if (went > 0) {
		cj->out_sent += went;
		metrics_sendfile_octets(went);
		session_command_timer_reset(s); /* the client is reading: not idle */
	}
	switch (r) {
	case TLS_SENDFILE_REFUSED: /* the rest of the piece from its buffer */
		if (err[0] != '\0' && !atomic_exchange(&sendfile_refused, true))
			log_warn("user=%s: sending message %zu from its file: %s: the kernel does not "
				 "send these files (SSL_sendfile); from now on RETRs copy them "
				 "through tpops",
				 s->user.login, cj->index + 1, err);
		/* fall through */
	case TLS_SENDFILE_DONE:
		st->sending = NULL;
		piece_out(s, cj);
		return;
	case TLS_SENDFILE_MORE: /* the socket may take more: at the loop's next turn */
	case TLS_SENDFILE_WAIT:
		if (st->writable == NULL)
			st->writable =
				event_new(bufferevent_get_base(s->bev), bufferevent_getfd(s->bev),
					  EV_WRITE, stream_writable, s);
		event_add(st->writable, NULL);
		return;
	case TLS_SENDFILE_FAILED:
		break;
	}
	if (peer_gone) { /* as when the bufferevent finds it out: the one path */
		log_debug("session %llu: sending message %zu: %s", (unsigned long long)s->id,
			  cj->index + 1, err);
		s->peer_gone = true;
		session_input_ended(s);
		return;
	}
	log_error("user=%s: sending message %zu from its file: %s", s->user.login, cj->index + 1,
		  err);
	session_close(s, "read error in the middle of a message");
}

/* Drops what the stream still had to send from the file. */
static void stream_stop_sending(struct pop3_stream *st)
{
	if (st->writable != NULL)
		event_del(st->writable);
	if (st->sending != NULL)
		chunk_job_free(st->sending);
	if (st->held != NULL)
		chunk_job_free(st->held);
	st->sending = NULL;
	st->held = NULL;
}

void pop3_stream_resume(struct session *s)
{
	if (s->wait != WAIT_STREAM || s->closing)
		return;
	if (s->stream->sending != NULL)
		stream_send_file(s);
	else if (!s->stream->fetching)
		stream_fetch(s);
}

void pop3_stream_abandon(struct session *s)
{
	struct pop3_stream *st = s->stream;
	stream_stop_sending(st);
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
	st->from_file = !st->top && s->tls && s->maildrop->ops->file_dup != NULL &&
			!atomic_load_explicit(&sendfile_refused, memory_order_relaxed) &&
			tls_kernel_sends(bufferevent_openssl_get_ssl(s->bev));
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
	stream_stop_sending(s->stream);
	if (s->stream->writable != NULL)
		event_free(s->stream->writable);
	if (s->stream->ahead.job != NULL)
		chunk_job_free(s->stream->ahead.job);
	free(s->stream);
	s->stream = NULL;
}
