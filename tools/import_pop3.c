/* tpops-import pop3: one mailbox from any live POP3 server (a hosted
 * provider, qpopper, an old box), each message with the UIDL that server
 * shows (UIDL, then RETR of what is missing). Nothing is deleted on the
 * source: no DELE is ever sent. A second run fetches only the UIDLs the
 * tpops user does not have yet (import_target.c decides), so it picks up
 * what arrived since, or finishes an interrupted run.
 *
 * What the server sends is parsed by pop3_client.c (fuzzed); this file is
 * the connection: TCP, or TLS from the first octet with --tls (OpenSSL,
 * the peer's certificate checked against the system's CAs, or --tls-ca,
 * and the host name or address), and USER/PASS. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sysexits.h>
#include <unistd.h>

#include "buf.h"
#include "import.h"
#include "pop3_client.h"
#include "tool_common.h"
#include "xalloc.h"

/* A server silent this long is gone. */
#define POP3C_TIMEOUT_SECONDS 300
/* The largest message taken (larger ones are reported, not imported). */
#define POP3C_MESSAGE_MAX (1024u * 1024 * 1024)

static const char *ep_host, *ep_port, *ep_ca;
static bool ep_tls;

void import_pop3_endpoint(const char *host, const char *port, bool tls, const char *ca_file)
{
	ep_host = host;
	ep_port = port;
	ep_tls = tls;
	ep_ca = ca_file;
}

/* The peer's certificate must name the host: a DNS name, or an IP address
 * given as one. */
static bool expect_name(SSL *ssl)
{
	unsigned char addr[16];
	if (inet_pton(AF_INET, ep_host, addr) == 1 || inet_pton(AF_INET6, ep_host, addr) == 1)
		return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), ep_host) == 1;
	return SSL_set_tlsext_host_name(ssl, ep_host) == 1 && SSL_set1_host(ssl, ep_host) == 1;
}

struct conn {
	struct import_reader reader; /* first: the target calls back with it */
	int fd;
	SSL_CTX *ctx;
	SSL *ssl;
	char in[65536];
	size_t in_len;
	char err[512];
	bool broken; /* no more commands on it */
};

static int conn_read(struct conn *c)
{
	if (c->in_len == sizeof c->in)
		return -1;
	ssize_t n;
	if (c->ssl != NULL) {
		int r = SSL_read(c->ssl, c->in + c->in_len, (int)(sizeof c->in - c->in_len));
		n = r > 0 ? r : (SSL_get_error(c->ssl, r) == SSL_ERROR_ZERO_RETURN ? 0 : -1);
	} else {
		do
			n = read(c->fd, c->in + c->in_len, sizeof c->in - c->in_len);
		while (n < 0 && errno == EINTR);
	}
	if (n <= 0) {
		snprintf(c->err, sizeof c->err, "%s: %s", ep_host,
			 n == 0		   ? "the server closed the connection"
			 : errno == EAGAIN ? "the server did not answer in time"
					   : strerror(errno));
		c->broken = true;
		return -1;
	}
	c->in_len += (size_t)n;
	return 0;
}

/* The next line into line (at most max octets with its end). -1 on a
 * network error or a line longer than max (the connection is unusable). */
static int conn_line(struct conn *c, char *line, size_t max, size_t *len_r)
{
	for (;;) {
		size_t n = pop3c_line_length(c->in, c->in_len);
		if (n > 0) {
			if (n > max) {
				snprintf(c->err, sizeof c->err, "%s: a line longer than %zu octets",
					 ep_host, max);
				c->broken = true;
				return -1;
			}
			memcpy(line, c->in, n);
			memmove(c->in, c->in + n, c->in_len - n);
			c->in_len -= n;
			*len_r = n;
			return 0;
		}
		if (c->in_len > max) {
			snprintf(c->err, sizeof c->err, "%s: a line longer than %zu octets",
				 ep_host, max);
			c->broken = true;
			return -1;
		}
		if (conn_read(c) != 0)
			return -1;
	}
}

static int conn_write(struct conn *c, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n;
		if (c->ssl != NULL)
			n = SSL_write(c->ssl, data, (int)len);
		else
			n = write(c->fd, data, len);
		if (n < 0 && c->ssl == NULL && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(c->err, sizeof c->err, "%s: sending: %s", ep_host,
				 strerror(errno));
			c->broken = true;
			return -1;
		}
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Sends cmd (shown as shown in messages) and reads the status line: 0 for
 * +OK, -1 otherwise (reason in c->err). */
static int command(struct conn *c, const char *cmd, const char *shown)
{
	struct buf b = BUF_INIT;
	buf_printf(&b, "%s\r\n", cmd);
	int rc = conn_write(c, b.data, b.len);
	buf_wipe(&b);
	buf_free(&b);
	if (rc != 0)
		return -1;
	char line[POP3C_MAX_STATUS + 2];
	size_t n;
	if (conn_line(c, line, sizeof line - 1, &n) != 0)
		return -1;
	size_t content = pop3c_line_content(line, n);
	const char *text;
	enum pop3c_status st = pop3c_status(line, content, &text);
	if (st == POP3C_OK)
		return 0;
	if (st == POP3C_ERR)
		snprintf(c->err, sizeof c->err, "%s: %s: the server said -ERR %.*s", ep_host, shown,
			 (int)(content - (size_t)(text - line)), text);
	else {
		snprintf(c->err, sizeof c->err, "%s: %s: not a POP3 answer", ep_host, shown);
		c->broken = true;
	}
	return -1;
}

/* Reads a multi-line answer's data into ml. */
static int multiline(struct conn *c, struct pop3c_multiline *ml)
{
	for (;;) {
		size_t n = pop3c_line_length(c->in, c->in_len);
		if (n == 0) {
			if (c->in_len == sizeof c->in) {
				/* a line longer than the buffer: in parts (a CR
				 * at the end may start the line end: kept back) */
				size_t part = c->in_len - (c->in[c->in_len - 1] == '\r');
				pop3c_multiline_part(ml, c->in, part);
				memmove(c->in, c->in + part, c->in_len - part);
				c->in_len -= part;
			}
			if (conn_read(c) != 0)
				return -1;
			continue;
		}
		bool end = pop3c_multiline_line(ml, c->in, n);
		memmove(c->in, c->in + n, c->in_len - n);
		c->in_len -= n;
		if (end)
			return 0;
	}
}

static int connect_to(struct conn *c)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
	const char *port = ep_port ? ep_port : (ep_tls ? "995" : "110");
	int rc = getaddrinfo(ep_host, port, &hints, &res);
	if (rc != 0) {
		snprintf(c->err, sizeof c->err, "%s: %s", ep_host, gai_strerror(rc));
		return -1;
	}
	c->fd = -1;
	int last = 0;
	for (struct addrinfo *ai = res; ai != NULL && c->fd < 0; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0)
			continue;
		struct timeval tv = {.tv_sec = POP3C_TIMEOUT_SECONDS};
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
			c->fd = fd;
		} else {
			last = errno;
			close(fd);
		}
	}
	freeaddrinfo(res);
	if (c->fd < 0) {
		snprintf(c->err, sizeof c->err, "%s port %s: %s", ep_host, port, strerror(last));
		return -1;
	}
	if (!ep_tls)
		return 0;
	c->ctx = SSL_CTX_new(TLS_client_method());
	if (c->ctx == NULL ||
	    (ep_ca != NULL ? SSL_CTX_load_verify_locations(c->ctx, ep_ca, NULL)
			   : SSL_CTX_set_default_verify_paths(c->ctx)) != 1 ||
	    SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION) != 1 ||
	    (SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL), 0) ||
	    (c->ssl = SSL_new(c->ctx)) == NULL || SSL_set_fd(c->ssl, c->fd) != 1 ||
	    !expect_name(c->ssl) || SSL_connect(c->ssl) != 1) {
		unsigned long e = ERR_get_error();
		long v = c->ssl ? SSL_get_verify_result(c->ssl) : X509_V_OK;
		snprintf(c->err, sizeof c->err, "%s: TLS: %s", ep_host,
			 v != X509_V_OK ? X509_verify_cert_error_string(v)
			 : e		? ERR_reason_error_string(e)
					: "the handshake failed");
		return -1;
	}
	return 0;
}

static void conn_close(struct conn *c)
{
	if (c->ssl != NULL) {
		if (!c->broken)
			SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
	}
	if (c->ctx != NULL)
		SSL_CTX_free(c->ctx);
	if (c->fd >= 0)
		close(c->fd);
}

/* The target asks for a message: RETR it. */
static int retr(struct import_reader *r, const struct import_msg *m, char **data_r, size_t *len_r,
		char *err, size_t errlen)
{
	struct conn *c = (struct conn *)r;
	char cmd[32];
	snprintf(cmd, sizeof cmd, "RETR %u", m->number);
	if (c->broken || command(c, cmd, cmd) != 0) {
		snprintf(err, errlen, "%s", c->err);
		return -1;
	}
	struct pop3c_multiline ml = {.max = POP3C_MESSAGE_MAX};
	if (multiline(c, &ml) != 0) {
		snprintf(err, errlen, "%s", c->err);
		buf_free(&ml.out);
		return -1;
	}
	if (ml.too_large) {
		snprintf(err, errlen, "%s: message %u (UIDL %s) is larger than %u octets", ep_host,
			 m->number, m->uidl, POP3C_MESSAGE_MAX);
		buf_free(&ml.out);
		return -1;
	}
	*len_r = ml.out.len;
	*data_r = ml.out.data ? ml.out.data : xstrdup("");
	return 0;
}

static int compare_strings(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* UIDL and LIST into l, in the server's order. */
static int listing(struct conn *c, struct import_list *l)
{
	if (command(c, "UIDL", "UIDL") != 0)
		return -1;
	char line[POP3C_MAX_LISTING_LINE + 2];
	for (;;) {
		size_t n;
		if (conn_line(c, line, sizeof line - 1, &n) != 0)
			return -1;
		size_t content = pop3c_line_content(line, n);
		if (content == 1 && line[0] == '.')
			break;
		struct import_msg tmp = {0};
		if (!pop3c_uidl_line(line, content, &tmp.number, tmp.uidl)) {
			snprintf(c->err, sizeof c->err, "%s: UIDL: not a unique-id line: \"%.*s\"",
				 ep_host, (int)(content < 80 ? content : 80), line);
			c->broken = true;
			return -1;
		}
		*import_list_add(l) = tmp;
	}
	if (command(c, "LIST", "LIST") != 0)
		return -1;
	for (;;) {
		size_t n;
		if (conn_line(c, line, sizeof line - 1, &n) != 0)
			return -1;
		size_t content = pop3c_line_content(line, n);
		if (content == 1 && line[0] == '.')
			break;
		unsigned number;
		uint64_t size;
		if (!pop3c_list_line(line, content, &number, &size)) {
			snprintf(c->err, sizeof c->err, "%s: LIST: not a scan line", ep_host);
			c->broken = true;
			return -1;
		}
		for (size_t i = 0; i < l->count; i++)
			if (l->msgs[i].number == number)
				l->msgs[i].size = size;
	}
	/* two messages with one UIDL would be one to a client: refused */
	const char **sorted = xcalloc(l->count ? l->count : 1, sizeof *sorted);
	for (size_t i = 0; i < l->count; i++)
		sorted[i] = l->msgs[i].uidl;
	qsort(sorted, l->count, sizeof *sorted, compare_strings);
	for (size_t i = 0; i + 1 < l->count; i++)
		if (strcmp(sorted[i], sorted[i + 1]) == 0) {
			snprintf(c->err, sizeof c->err,
				 "%s: two messages have the same UIDL %s; nothing imported",
				 ep_host, sorted[i]);
			free(sorted);
			return -1;
		}
	free(sorted);
	return 0;
}

int import_pop3(int argc, char **argv, struct db *db, const struct config *cfg,
		struct import_options *opt, struct import_stats *st)
{
	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: tpops-import pop3 --host HOST [--port PORT] [--tls] LOGIN "
				"PASSWORD [LOCAL]\n");
		return EX_USAGE;
	}
	const char *login = argv[0], *local = argc == 3 ? argv[2] : argv[0];
	char *password = tool_password_arg("tpops-import", argv[1]);
	struct user u = {0};
	if (import_user(db, cfg, opt, local, NULL, NULL, NULL, &u) != 0) {
		free(password);
		st->users_failed++;
		return EX_NOUSER;
	}
	struct conn c = {.reader = {.read = retr, .maildir_fd = -1}, .fd = -1};
	struct import_list l = {0};
	int rc = EX_OK;
	char greeting[POP3C_MAX_STATUS + 2];
	size_t n;
	const char *text;
	struct buf cmd = BUF_INIT;
	if (connect_to(&c) != 0 || conn_line(&c, greeting, sizeof greeting - 1, &n) != 0) {
		rc = EX_TEMPFAIL;
	} else if (pop3c_status(greeting, pop3c_line_content(greeting, n), &text) != POP3C_OK) {
		snprintf(c.err, sizeof c.err, "%s: not a POP3 server's greeting", ep_host);
		rc = EX_PROTOCOL;
	} else {
		buf_printf(&cmd, "USER %s", login);
		if (command(&c, cmd.data, "USER") != 0) {
			rc = EX_NOPERM;
		} else {
			buf_truncate(&cmd, 0);
			buf_printf(&cmd, "PASS %s", password);
			if (command(&c, cmd.data, "PASS") != 0)
				rc = EX_NOPERM;
			else if (listing(&c, &l) != 0)
				rc = EX_PROTOCOL;
		}
	}
	buf_wipe(&cmd);
	buf_free(&cmd);
	if (password != NULL) {
		explicit_bzero(password, strlen(password));
		free(password);
	}
	if (rc != EX_OK) {
		fprintf(stderr, "tpops-import: %s\n", c.err);
		st->users_failed++;
	} else {
		uint64_t bytes = 0;
		for (size_t i = 0; i < l.count; i++)
			bytes += l.msgs[i].size;
		st->msgs_total += l.count;
		st->bytes_total += bytes;
		import_progress_user(local, l.count, bytes);
		struct import_stats before = *st;
		if (import_messages(db, cfg, opt, &u, -1, &l, &c.reader, st) != 0) {
			st->users_failed++;
			rc = EX_TEMPFAIL;
		} else {
			st->users++;
		}
		if (opt->dry_run)
			import_dry_run_user(&u, &before, st);
		/* QUIT with nothing marked: the source stays as it was */
		if (!c.broken)
			(void)command(&c, "QUIT", "QUIT");
	}
	conn_close(&c);
	import_list_free(&l);
	user_clear(&u);
	return rc;
}
