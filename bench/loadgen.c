/* loadgen: a POP3 load generator for the tpops benchmark (bench/run.sh).
 *
 * One process, one thread, non-blocking sockets on one epoll set, so that
 * thousands of connections cost the client little and a 2-core machine
 * measures the server rather than the client. Every loop is bounded by a
 * count and by the deadline (-T), and the tool talks to loopback addresses
 * only (127.0.0.0/8, ::1): it is a benchmark, not a weapon.
 *
 * Modes (one result line of key=value pairs on stdout):
 *   sessions  -n TOTAL -c CONC: connect, USER, PASS, STAT, LIST, UIDL, QUIT;
 *             sessions/s and p50/p99/max latency (connect to QUIT's +OK).
 *   retr      -k CONNS: each connection logs in as its own user, then all
 *             RETR their messages (1..--msgs, --repeat times) at once; MB/s
 *             (10^6 octets) from the first RETR to the last octet;
 *             --rss-pid PID samples the VmRSS of PID's process tree.
 *   idle      -n N[,N2...]: opens N authenticated sessions (-c logins in
 *             flight), holds them, sums the PSS of --pss-pid's process
 *             tree, runs one more full session (--extra-user), then checks
 *             with NOOP that the N sessions are still served; then opens
 *             more up to N2 and measures again, and so on (one line each).
 *   probe     one session USER PASS STAT UIDL QUIT as user 0; the time
 *             from connect to the PASS reply, the STAT reply and the end
 *             of the UIDL listing (a large maildrop, first/second login).
 *   raw       -k CONNS --bytes B: forks a plain TCP source that sends B
 *             octets (of --file, repeated) on each connection, and reads
 *             them as retr does: the loopback limit for the same bytes.
 *             With --msg-bytes B --msgs M: M request/response rounds of B
 *             octets, the least a one-request-per-message protocol costs.
 *
 * TLS: --tls (implicit TLS, POP3S) or --stls (STLS after the greeting) in
 * every mode but raw; --resume keeps each slot's last TLS session and
 * offers it on the next connection (the line reports how many handshakes
 * were resumed); --handshake-only (sessions): greeting, TLS, QUIT: a
 * handshake storm. The certificate is not verified (a benchmark).
 *
 * Users: --user FMT (printf with one %d) numbered from 0, --users COUNT,
 * --pass PASSWORD. sessions: slot s alternates between users s and s+CONC
 * (so a maildrop lock released just after the QUIT reply never collides);
 * retr: connection i is user i; idle: session i is user i. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define MAX_CONNS 60000
#define MAX_EVENTS 512
#define READ_BUF (256 * 1024)
#define LINE_MAX_LEN 1024
#define MAX_LOOP_ITERATIONS 500000000L /* a hard stop besides the deadline */
#define MAX_TREE_PIDS 65536

enum mode { MODE_SESSIONS, MODE_RETR, MODE_IDLE, MODE_RAW, MODE_PROBE };

static struct {
	enum mode mode;
	const char *host;
	int port;
	int total, conc, conns;
	const char *user_fmt;
	int users;
	const char *pass;
	double timeout;
	double duration; /* sessions: start new sessions for this long */
	int msgs, repeat;
	pid_t rss_pid, pss_pid;
	const char *extra_user;
	long long bytes, msg_bytes;
	const char *file;
	double settle;
	bool verbose;
	bool tls, stls, resume, handshake_only;
} opt = {
	.host = "127.0.0.1",
	.port = 110,
	.total = 1000,
	.conc = 16,
	.conns = 1,
	.user_fmt = "u%d",
	.users = 1000000,
	.pass = "pw",
	.timeout = 120,
	.msgs = 0,
	.repeat = 1,
	.settle = 1.0,
};

static struct sockaddr_storage target;
static socklen_t target_len;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("loadgen: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(2);
}

/* Loopback only: 127.0.0.0/8 or ::1, numeric (no name lookup). */
static void set_target(const char *host, int port)
{
	struct sockaddr_in *in4 = (struct sockaddr_in *)&target;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&target;
	memset(&target, 0, sizeof target);
	if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
		if ((ntohl(in4->sin_addr.s_addr) >> 24) != 127)
			die("refusing %s: only loopback targets (127.0.0.0/8, ::1)", host);
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)port);
		target_len = sizeof *in4;
	} else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		if (!IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
			die("refusing %s: only loopback targets (127.0.0.0/8, ::1)", host);
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		target_len = sizeof *in6;
	} else {
		die("%s: give a numeric loopback address (127.0.0.1 or ::1)", host);
	}
	if (port <= 0 || port > 65535)
		die("port %d out of range", port);
}

/* ---- process trees in /proc (Dovecot is many processes) ---- */

static size_t tree_pids(pid_t root, pid_t *out, size_t max)
{
	static pid_t pid[MAX_TREE_PIDS], ppid[MAX_TREE_PIDS];
	size_t n = 0;
	DIR *d = opendir("/proc");
	if (d == NULL)
		return 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL && n < MAX_TREE_PIDS) {
		if (!isdigit((unsigned char)e->d_name[0]))
			continue;
		char path[300], buf[512];
		snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
		int fd = open(path, O_RDONLY);
		if (fd < 0)
			continue;
		ssize_t len = read(fd, buf, sizeof buf - 1);
		close(fd);
		if (len <= 0)
			continue;
		buf[len] = '\0';
		char *p = strrchr(buf, ')'); /* the name may hold spaces */
		int parent;
		char state;
		if (p == NULL || sscanf(p + 1, " %c %d", &state, &parent) != 2)
			continue;
		pid[n] = atoi(e->d_name);
		ppid[n] = parent;
		n++;
	}
	closedir(d);
	size_t count = 0;
	out[count++] = root;
	/* breadth first over the snapshot; bounded by its size */
	for (size_t head = 0; head < count && head < max; head++)
		for (size_t i = 0; i < n && count < max; i++)
			if (ppid[i] == out[head])
				out[count++] = pid[i];
	return count;
}

/* Sums one "Key:   N kB" field over a process tree. */
static long long tree_sum_kib(pid_t root, const char *file, const char *key, size_t *procs_r)
{
	static pid_t pids[MAX_TREE_PIDS];
	size_t n = tree_pids(root, pids, MAX_TREE_PIDS);
	long long total = 0;
	size_t keylen = strlen(key), seen = 0;
	for (size_t i = 0; i < n; i++) {
		char path[64], line[256];
		snprintf(path, sizeof path, "/proc/%d/%s", (int)pids[i], file);
		FILE *f = fopen(path, "r");
		if (f == NULL)
			continue;
		seen++;
		for (int lines = 0; lines < 200 && fgets(line, sizeof line, f); lines++) {
			if (strncmp(line, key, keylen) == 0 && line[keylen] == ':') {
				total += atoll(line + keylen + 1);
				break;
			}
		}
		fclose(f);
	}
	if (procs_r)
		*procs_r = seen;
	return total;
}

/* ---- connections ---- */

enum cstate {
	C_FREE,
	C_CONNECTING,
	C_GREETING,
	C_STLS,      /* STLS sent, waiting for +OK */
	C_HANDSHAKE, /* TLS handshake in progress */
	C_USER,
	C_PASS,
	C_STAT,
	C_LIST,
	C_UIDL,
	C_READY, /* retr: logged in, waiting for the start */
	C_RETR,
	C_HELD, /* idle: logged in */
	C_NOOP,
	C_ALIVE, /* idle: answered NOOP after the measurement */
	C_QUIT,
	C_RAW,
};

struct conn {
	int fd;
	enum cstate state;
	int slot;
	int user;
	bool multi; /* reading a multi-line answer's data */
	bool extra; /* idle: the one more session */
	unsigned tail_len;
	char tail[5];
	size_t line_len;
	char line[LINE_MAX_LEN];
	size_t out_len; /* unsent command bytes */
	char out[256];
	double started;
	double step[16]; /* -v: when each state was entered */
	uint64_t bytes;
	int retr_next, retr_last, retr_round;
	SSL *ssl;              /* after the handshake starts */
	SSL_SESSION *session;  /* --resume: the slot's last session */
};

static struct conn *conns;
static int nconns;
static int epfd;
static char *readbuf;

/* results */
static long sessions_ok, sessions_err, err_in_use, err_auth, err_conn, err_other;
static long sessions_started;
static double *latencies;
static long nlat;
static uint64_t total_bytes;
static double t_first, t_last;
static long probe_count;
static double probe_uidl_end, probe_conn_start;
static uint64_t probe_uidl_bytes;
static int active;
static SSL_CTX *tls_ctx;
static volatile sig_atomic_t stop_requested; /* SIGTERM: start no more sessions */
static long tls_handshakes, tls_resumed;

static void watch(struct conn *c, uint32_t events, int op)
{
	struct epoll_event ev = {.events = events, .data.ptr = c};
	if (epoll_ctl(epfd, op, c->fd, &ev) != 0 && op != EPOLL_CTL_DEL)
		die("epoll_ctl: %s", strerror(errno));
}

static void conn_close(struct conn *c)
{
	if (c->ssl != NULL) {
		/* no close_notify (the server ends sessions itself), but marked
		 * as shut down: OpenSSL makes the session of an SSL freed in
		 * the middle unresumable */
		SSL_set_shutdown(c->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd >= 0) {
		epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
	}
	c->fd = -1;
	c->state = C_FREE;
	active--;
}

static int conn_open(struct conn *c)
{
	int fd = socket(target.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	int on = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
	if (connect(fd, (struct sockaddr *)&target, target_len) != 0 && errno != EINPROGRESS) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	c->fd = fd;
	c->state = C_CONNECTING;
	c->multi = false;
	c->line_len = 0;
	c->out_len = 0;
	c->tail_len = 0;
	c->bytes = 0;
	c->started = now();
	active++;
	watch(c, EPOLLIN | EPOLLOUT, EPOLL_CTL_ADD);
	return 0;
}

/* SSL_write/SSL_read/SSL_do_handshake result: > 0 done, 0 try again
 * when the socket is ready (epoll set for what OpenSSL waits for), -1
 * failed. */
static int tls_result(struct conn *c, int r)
{
	if (r > 0)
		return r;
	int e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ)
		return 0;
	if (e == SSL_ERROR_WANT_WRITE) {
		watch(c, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
		return 0;
	}
	if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && r == 0))
		errno = ECONNRESET;
	else if (opt.verbose)
		ERR_print_errors_fp(stderr);
	ERR_clear_error();
	return -1;
}

static int conn_flush(struct conn *c)
{
	while (c->out_len > 0 && c->ssl != NULL && SSL_is_init_finished(c->ssl)) {
		int r = tls_result(c, SSL_write(c->ssl, c->out, (int)c->out_len));
		if (r < 0)
			return -1;
		if (r == 0)
			return 0;
		memmove(c->out, c->out + r, c->out_len - (size_t)r);
		c->out_len -= (size_t)r;
	}
	while (c->out_len > 0 && c->ssl == NULL) {
		ssize_t n = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				watch(c, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
				return 0;
			}
			return -1;
		}
		memmove(c->out, c->out + n, c->out_len - (size_t)n);
		c->out_len -= (size_t)n;
	}
	return 0;
}

static int conn_send(struct conn *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(c->out + c->out_len, sizeof c->out - c->out_len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof c->out - c->out_len)
		die("command too long");
	c->out_len += (size_t)n;
	return conn_flush(c);
}

static void user_name(int index, char *out, size_t size)
{
	snprintf(out, size, opt.user_fmt, index);
}

/* ---- protocol ---- */

static void session_failed(struct conn *c, const char *line);
static void session_start_next(struct conn *c);
static void send_login(struct conn *c);

/* ---- TLS ---- */

/* --resume: the session (TLS 1.3: the ticket) the server just gave this
 * connection becomes its slot's session for the next connection. */
static int tls_new_session(SSL *ssl, SSL_SESSION *session)
{
	struct conn *c = SSL_get_app_data(ssl);
	if (c == NULL || !opt.resume)
		return 0;
	if (c->session != NULL)
		SSL_SESSION_free(c->session);
	c->session = session;
	return 1; /* the reference is ours */
}

/* The server's certificate is not checked at all: with SSL_VERIFY_NONE
 * alone OpenSSL still builds the chain against an empty store and then
 * ignores the result. That work is the client's, on the same cores as the
 * server under test, so it goes (about 2 % of loadgen's CPU per POP3S
 * session with ECDSA). */
static int tls_skip_chain(X509_STORE_CTX *store, void *arg)
{
	(void)store;
	(void)arg;
	return 1;
}

static void tls_init(void)
{
	tls_ctx = SSL_CTX_new(TLS_client_method());
	if (tls_ctx == NULL)
		die("SSL_CTX_new failed");
	SSL_CTX_set_min_proto_version(tls_ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_NONE, NULL); /* a benchmark of the loopback */
	SSL_CTX_set_cert_verify_callback(tls_ctx, tls_skip_chain, NULL);
	SSL_CTX_set_mode(tls_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_session_cache_mode(tls_ctx,
				       SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(tls_ctx, tls_new_session);
}

/* What follows a finished handshake: the greeting (POP3S) or USER (STLS). */
static void tls_established(struct conn *c)
{
	tls_handshakes++;
	if (SSL_session_reused(c->ssl))
		tls_resumed++;
	watch(c, EPOLLIN | (c->out_len > 0 ? EPOLLOUT : 0), EPOLL_CTL_MOD);
	if (opt.tls) {
		c->state = C_GREETING;
	} else if (opt.handshake_only) {
		c->state = C_QUIT;
		if (conn_send(c, "QUIT\r\n") != 0)
			session_failed(c, NULL);
	} else {
		send_login(c);
	}
}

static void tls_handshake(struct conn *c)
{
	int r = tls_result(c, SSL_do_handshake(c->ssl));
	if (r < 0)
		session_failed(c, "-ERR (loadgen) TLS handshake failed");
	else if (r > 0)
		tls_established(c);
}

static int tls_start(struct conn *c)
{
	c->ssl = SSL_new(tls_ctx);
	if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1)
		return -1;
	SSL_set_app_data(c->ssl, c);
	if (opt.resume && c->session != NULL)
		SSL_set_session(c->ssl, c->session);
	SSL_set_connect_state(c->ssl);
	c->state = C_HANDSHAKE;
	tls_handshake(c);
	return 0;
}

static void start_multi(struct conn *c)
{
	c->multi = true;
	/* the status line's CRLF counts: an empty listing is just ".\r\n" */
	memcpy(c->tail, "\r\n", 2);
	c->tail_len = 2;
}

/* Scans multi-line data. Since the server sends nothing after the
 * terminator until the next command (no pipelining here), and dot-stuffing
 * keeps "\r\n.\r\n" out of the data, the answer is complete exactly when
 * the octets so far end with it: O(1) per read. Returns octets consumed
 * and sets *done. */
static size_t scan_multi(struct conn *c, const char *d, size_t n, bool *done)
{
	char tmp[10];
	size_t keep = n < 5 ? n : 5;
	size_t from_tail = 5 - keep < c->tail_len ? 5 - keep : c->tail_len;
	memcpy(tmp, c->tail + c->tail_len - from_tail, from_tail);
	memcpy(tmp + from_tail, d + n - keep, keep);
	size_t t = from_tail + keep;
	*done = t >= 5 && memcmp(tmp + t - 5, "\r\n.\r\n", 5) == 0;
	memcpy(c->tail, tmp + t - (t < 5 ? t : 5), t < 5 ? t : 5);
	c->tail_len = (unsigned)(t < 5 ? t : 5);
	c->bytes += n;
	return n;
}

static void send_login(struct conn *c)
{
	char name[128];
	if (c->extra)
		snprintf(name, sizeof name, "%s", opt.extra_user);
	else
		user_name(c->user, name, sizeof name);
	c->state = C_USER;
	if (conn_send(c, "USER %s\r\n", name) != 0)
		session_failed(c, NULL);
}

static void retr_send_next(struct conn *c)
{
	if (c->retr_next > c->retr_last) {
		if (++c->retr_round >= opt.repeat) {
			c->state = C_QUIT;
			double t = now();
			if (t > t_last)
				t_last = t;
			if (conn_send(c, "QUIT\r\n") != 0)
				session_failed(c, NULL);
			return;
		}
		c->retr_next = 1;
	}
	c->state = C_RETR;
	if (conn_send(c, "RETR %d\r\n", c->retr_next++) != 0)
		session_failed(c, NULL);
}

/* A complete status line (CRLF removed). */
static void on_line(struct conn *c, const char *line)
{
	bool ok = strncmp(line, "+OK", 3) == 0;
	if ((opt.verbose || opt.mode == MODE_PROBE) && c->state < 16)
		c->step[c->state] = now();
	if (!ok && c->state != C_FREE) {
		session_failed(c, line);
		return;
	}
	switch (c->state) {
	case C_GREETING:
		if (opt.stls) {
			c->state = C_STLS;
			if (conn_send(c, "STLS\r\n") != 0)
				session_failed(c, NULL);
		} else if (opt.handshake_only) {
			c->state = C_QUIT;
			if (conn_send(c, "QUIT\r\n") != 0)
				session_failed(c, NULL);
		} else {
			send_login(c);
		}
		break;
	case C_STLS:
		if (tls_start(c) != 0)
			session_failed(c, NULL);
		break;
	case C_USER:
		c->state = C_PASS;
		if (conn_send(c, "PASS %s\r\n", opt.pass) != 0)
			session_failed(c, NULL);
		break;
	case C_PASS:
		if (opt.mode == MODE_IDLE && !c->extra) {
			c->state = C_HELD;
			sessions_ok++;
			break;
		}
		c->state = C_STAT;
		if (conn_send(c, "STAT\r\n") != 0)
			session_failed(c, NULL);
		break;
	case C_STAT:
		if (opt.mode == MODE_RETR) {
			long count = 0;
			sscanf(line, "+OK %ld", &count);
			c->retr_last = opt.msgs > 0 && opt.msgs < count ? opt.msgs : (int)count;
			if (c->retr_last <= 0) {
				session_failed(c, "-ERR (loadgen) the maildrop is empty");
				break;
			}
			c->state = C_READY;
			break;
		}
		if (opt.mode == MODE_PROBE) {
			sscanf(line, "+OK %ld", &probe_count);
			c->state = C_UIDL;
			if (conn_send(c, "UIDL\r\n") != 0)
				session_failed(c, NULL);
			break;
		}
		c->state = C_LIST;
		if (conn_send(c, "LIST\r\n") != 0)
			session_failed(c, NULL);
		break;
	case C_LIST:
	case C_UIDL:
	case C_RETR:
		start_multi(c);
		break;
	case C_NOOP:
		c->state = C_ALIVE;
		break;
	case C_QUIT: {
		double t = now();
		if (opt.mode == MODE_SESSIONS || opt.mode == MODE_PROBE || c->extra) {
			latencies[nlat++] = t - c->started;
			if (opt.verbose && t - c->started > 0.1)
				fprintf(stderr,
					"loadgen: slow session (user %d) %.1f ms: greeting %.1f, USER %.1f, "
					"PASS %.1f, STAT %.1f, LIST %.1f, UIDL %.1f, QUIT %.1f\n",
					c->user, (t - c->started) * 1e3,
					(c->step[C_GREETING] - c->started) * 1e3,
					(c->step[C_USER] - c->step[C_GREETING]) * 1e3,
					(c->step[C_PASS] - c->step[C_USER]) * 1e3,
					(c->step[C_STAT] - c->step[C_PASS]) * 1e3,
					(c->step[C_LIST] - c->step[C_STAT]) * 1e3,
					(c->step[C_UIDL] - c->step[C_LIST]) * 1e3,
					(t - c->step[C_UIDL]) * 1e3);
			if (t > t_last)
				t_last = t;
		}
		sessions_ok++;
		conn_close(c);
		if (opt.mode == MODE_SESSIONS)
			session_start_next(c);
		break;
	}
	default:
		break;
	}
}

static void on_multi_done(struct conn *c)
{
	c->multi = false;
	switch (c->state) {
	case C_LIST:
		c->state = C_UIDL;
		if (conn_send(c, "UIDL\r\n") != 0)
			session_failed(c, NULL);
		break;
	case C_UIDL:
		probe_uidl_end = now();
		probe_uidl_bytes = c->bytes;
		c->state = C_QUIT;
		if (conn_send(c, "QUIT\r\n") != 0)
			session_failed(c, NULL);
		break;
	case C_RETR:
		total_bytes += c->bytes;
		c->bytes = 0;
		retr_send_next(c);
		break;
	default:
		break;
	}
}

static void conn_input(struct conn *c, const char *d, size_t n)
{
	if (c->state == C_RAW) {
		c->bytes += n;
		total_bytes += n;
		/* request/response: the next request once a message is in */
		if (opt.msg_bytes > 0 && c->bytes >= (uint64_t)opt.msg_bytes) {
			c->bytes -= (uint64_t)opt.msg_bytes;
			if (++c->retr_next >= (opt.msgs > 0 ? opt.msgs : 1)) {
				double t = now();
				if (t > t_last)
					t_last = t;
				sessions_ok++;
				conn_close(c);
			} else if (conn_send(c, "RETR\r\n") != 0) {
				session_failed(c, NULL);
			}
		}
		return;
	}
	/* bounded: every pass consumes at least one octet; stops when the
	 * connection ends (and its slot may have opened a new one) */
	int fd = c->fd;
	while (n > 0 && c->state != C_FREE && c->fd == fd) {
		if (c->multi) {
			bool done = false;
			size_t used = scan_multi(c, d, n, &done);
			d += used;
			n -= used;
			if (done)
				on_multi_done(c);
			continue;
		}
		const char *nl = memchr(d, '\n', n);
		size_t take = nl ? (size_t)(nl - d) + 1 : n;
		if (c->line_len + take >= LINE_MAX_LEN) {
			session_failed(c, "-ERR (loadgen) status line too long");
			return;
		}
		memcpy(c->line + c->line_len, d, take);
		c->line_len += take;
		d += take;
		n -= take;
		if (nl) {
			size_t len = c->line_len - 1;
			if (len > 0 && c->line[len - 1] == '\r')
				len--;
			c->line[len] = '\0';
			c->line_len = 0;
			on_line(c, c->line);
		}
	}
}

static void classify_error(const char *line)
{
	if (line == NULL)
		err_conn++;
	else if (strstr(line, "IN-USE") || strstr(line, "in use") || strstr(line, "locked"))
		err_in_use++;
	else if (strstr(line, "AUTH") || strstr(line, "uthentication"))
		err_auth++;
	else
		err_other++;
}

static void session_failed(struct conn *c, const char *line)
{
	static int reported;
	if (c->state == C_FREE)
		return;
	if (opt.verbose || reported < 3) {
		reported++;
		fprintf(stderr, "loadgen: session failed in state %d: %s\n", (int)c->state,
			line ? line : strerror(errno));
	}
	classify_error(line);
	sessions_err++;
	bool sessions = opt.mode == MODE_SESSIONS;
	conn_close(c);
	if (sessions)
		session_start_next(c);
}

/* sessions: the slot of c starts its next session, if any is left. */
static void session_start_next(struct conn *c)
{
	/* persistent failure: stop rather than spin */
	if (sessions_err > opt.total / 2 + 10)
		return;
	if (sessions_started >= opt.total)
		return;
	if (opt.duration > 0 && t_first > 0 && now() - t_first >= opt.duration)
		return;
	if (stop_requested)
		return;
	int round = (int)(sessions_started / opt.conc);
	c->user = opt.users >= 2 * opt.conc ? c->slot + (round % 2) * opt.conc : c->slot % opt.users;
	sessions_started++;
	if (t_first == 0)
		t_first = now();
	if (conn_open(c) != 0) {
		classify_error(NULL);
		sessions_err++;
		/* the slot stays free; a failed connect is not retried in a loop */
	}
}

/* Reads what TLS records are there (one record per SSL_read), a bounded
 * number per event so that connections take turns. */
static void tls_input(struct conn *c)
{
	/* the same SSL: a connection that ends here may open the next one
	 * on the same descriptor number */
	SSL *ssl = c->ssl;
	for (int i = 0; c->ssl == ssl && (i < 64 || SSL_pending(ssl) > 0) && i < 100000 &&
			c->state != C_FREE;
	     i++) {
		int r = tls_result(c, SSL_read(c->ssl, readbuf, READ_BUF));
		if (r > 0) {
			conn_input(c, readbuf, (size_t)r);
			continue;
		}
		if (r < 0)
			session_failed(c, "(connection closed by the server)");
		break;
	}
}

static void conn_ready(struct conn *c, uint32_t events)
{
	if (c->state == C_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof err;
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err != 0) {
			errno = err;
			session_failed(c, NULL);
			return;
		}
		c->state = opt.mode == MODE_RAW ? C_RAW : C_GREETING;
		watch(c, EPOLLIN, EPOLL_CTL_MOD);
		if (opt.tls && c->state == C_GREETING) {
			if (tls_start(c) != 0)
				session_failed(c, "-ERR (loadgen) cannot set up TLS");
			return;
		}
		if (c->state == C_RAW) {
			c->retr_next = 0;
			if (opt.msg_bytes > 0 && conn_send(c, "RETR\r\n") != 0)
				session_failed(c, NULL);
			return;
		}
	}
	if (c->state == C_HANDSHAKE) {
		tls_handshake(c);
		return;
	}
	if ((events & EPOLLOUT) && c->out_len > 0) {
		if (conn_flush(c) != 0) {
			session_failed(c, NULL);
			return;
		}
		if (c->out_len == 0)
			watch(c, EPOLLIN, EPOLL_CTL_MOD);
	}
	if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	/* a bounded number of reads per event keeps connections fair */
	int fd = c->fd;
	if (c->ssl != NULL) {
		tls_input(c);
		return;
	}
	for (int i = 0; i < 16 && c->state != C_FREE && c->fd == fd; i++) {
		ssize_t n = recv(c->fd, readbuf, READ_BUF, 0);
		if (n > 0) {
			conn_input(c, readbuf, (size_t)n);
			if (n < READ_BUF)
				break;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n < 0 && errno == EINTR)
			continue;
		/* EOF or error */
		if (c->state == C_RAW) {
			double t = now();
			if (t > t_last)
				t_last = t;
			sessions_ok++;
			conn_close(c);
		} else {
			if (n == 0)
				errno = ECONNRESET;
			session_failed(c, n == 0 ? "(connection closed by the server)" : NULL);
		}
		break;
	}
}

/* Runs the loop until done() or the deadline; every pass may also call
 * tick(). Returns false on the deadline. */
static bool run_loop(double deadline, bool (*done)(void), void (*tick)(void))
{
	struct epoll_event events[MAX_EVENTS];
	for (long iter = 0; iter < MAX_LOOP_ITERATIONS; iter++) {
		if (done())
			return true;
		double left = deadline - now();
		if (left <= 0)
			return false;
		int wait_ms = tick ? 5 : (left < 0.1 ? (int)(left * 1000) + 1 : 100);
		int n = epoll_wait(epfd, events, MAX_EVENTS, wait_ms);
		if (n < 0 && errno != EINTR)
			die("epoll_wait: %s", strerror(errno));
		for (int i = 0; i < n; i++)
			conn_ready(events[i].data.ptr, events[i].events);
		if (tick)
			tick();
	}
	return false;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double percentile(double *v, long n, double p)
{
	if (n == 0)
		return 0;
	long i = (long)(p * (double)(n - 1) + 0.5);
	return v[i < n ? i : n - 1];
}

static void setup(int n)
{
	if (n > MAX_CONNS)
		die("at most %d connections", MAX_CONNS);
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)n + 64) {
		rl.rlim_cur = rl.rlim_max < (rlim_t)n + 64 ? rl.rlim_max : (rlim_t)n + 64;
		setrlimit(RLIMIT_NOFILE, &rl);
		if (rl.rlim_cur < (rlim_t)n + 16)
			die("need %d file descriptors, the limit is %llu (raise ulimit -n)", n + 16,
			    (unsigned long long)rl.rlim_cur);
	}
	nconns = n;
	conns = calloc((size_t)n + 1, sizeof *conns);
	readbuf = malloc(READ_BUF);
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (conns == NULL || readbuf == NULL || epfd < 0)
		die("out of memory or epoll: %s", strerror(errno));
	for (int i = 0; i <= n; i++) {
		conns[i].fd = -1;
		conns[i].slot = i;
	}
}

/* ---- sessions ---- */

static bool sessions_done(void)
{
	return active == 0;
}

static bool all_free_probe(void)
{
	return active == 0;
}

static int run_sessions(void)
{
	int c = opt.conc < opt.total ? opt.conc : opt.total;
	setup(c);
	latencies = calloc((size_t)opt.total + 1, sizeof *latencies);
	for (int i = 0; i < c; i++)
		session_start_next(&conns[i]);
	bool finished = run_loop(now() + opt.timeout, sessions_done, NULL);
	qsort(latencies, (size_t)nlat, sizeof *latencies, cmp_double);
	double secs = t_last > t_first ? t_last - t_first : 0;
	printf("mode=sessions conc=%d ok=%ld err=%ld in_use=%ld auth=%ld conn=%ld other=%ld "
	       "secs=%.3f rate=%.1f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f tls=%ld resumed=%ld%s\n",
	       c, sessions_ok, sessions_err, err_in_use, err_auth, err_conn, err_other, secs,
	       secs > 0 ? (double)sessions_ok / secs : 0, percentile(latencies, nlat, 0.50) * 1e3,
	       percentile(latencies, nlat, 0.99) * 1e3, nlat ? latencies[nlat - 1] * 1e3 : 0,
	       tls_handshakes, tls_resumed, finished ? "" : " deadline=hit");
	return sessions_err == 0 && finished ? 0 : 1;
}

/* ---- probe: one session's steps (a large maildrop) ---- */

static int run_probe(void)
{
	setup(1);
	latencies = calloc(2, sizeof *latencies);
	struct conn *c = &conns[0];
	c->user = 0;
	probe_conn_start = now();
	if (conn_open(c) != 0)
		die("connect: %s", strerror(errno));
	bool finished = run_loop(now() + opt.timeout, all_free_probe, NULL);
	double t0 = c->started;
	printf("mode=probe ok=%ld messages=%ld login_ms=%.1f stat_ms=%.1f uidl_ms=%.1f "
	       "uidl_bytes=%llu total_ms=%.1f%s\n",
	       sessions_ok, probe_count, (c->step[C_PASS] - t0) * 1e3, (c->step[C_STAT] - t0) * 1e3,
	       (probe_uidl_end - t0) * 1e3, (unsigned long long)probe_uidl_bytes,
	       nlat ? latencies[0] * 1e3 : 0, finished ? "" : " deadline=hit");
	return sessions_ok == 1 && finished ? 0 : 1;
}

/* ---- retr ---- */

static long long rss_base, rss_max;
static double rss_next;
static pid_t rss_pids[4096];
static size_t rss_npids;

/* VmRSS summed over the processes found at the start (listing /proc on
 * every sample would cost the client more than the sample). */
static long long rss_sample(void)
{
	long long total = 0;
	for (size_t i = 0; i < rss_npids; i++) {
		char path[64], line[256];
		snprintf(path, sizeof path, "/proc/%d/status", (int)rss_pids[i]);
		FILE *f = fopen(path, "r");
		if (f == NULL)
			continue;
		for (int lines = 0; lines < 100 && fgets(line, sizeof line, f); lines++) {
			if (strncmp(line, "VmRSS:", 6) == 0) {
				total += atoll(line + 6);
				break;
			}
		}
		fclose(f);
	}
	return total;
}

static bool retr_logged_in(void)
{
	int ready = 0;
	for (int i = 0; i < nconns; i++)
		if (conns[i].state == C_READY)
			ready++;
	return ready + sessions_err >= nconns;
}

static bool all_free(void)
{
	return active == 0;
}

static void rss_tick(void)
{
	if (opt.rss_pid <= 0)
		return;
	double t = now();
	if (t < rss_next)
		return;
	rss_next = t + 0.005;
	long long rss = rss_sample();
	if (rss > rss_max)
		rss_max = rss;
}

static int run_retr(void)
{
	setup(opt.conns);
	double deadline = now() + opt.timeout;
	for (int i = 0; i < opt.conns; i++) {
		conns[i].user = i;
		if (conn_open(&conns[i]) != 0)
			die("connect: %s", strerror(errno));
	}
	if (!run_loop(deadline, retr_logged_in, NULL) || sessions_err > 0)
		die("retr: not every connection logged in (%ld failed)", sessions_err);
	if (opt.rss_pid > 0) {
		rss_npids = tree_pids(opt.rss_pid, rss_pids, sizeof rss_pids / sizeof rss_pids[0]);
		rss_base = rss_sample();
		rss_max = rss_base;
	}
	t_first = now();
	for (int i = 0; i < nconns; i++) {
		conns[i].retr_next = 1;
		conns[i].retr_round = 0;
		retr_send_next(&conns[i]);
	}
	bool finished = run_loop(deadline, all_free, opt.rss_pid > 0 ? rss_tick : NULL);
	rss_tick();
	double secs = t_last > t_first ? t_last - t_first : 0;
	printf("mode=retr conns=%d ok=%ld err=%ld bytes=%llu secs=%.3f mbps=%.1f tls=%ld", nconns,
	       sessions_ok, sessions_err, (unsigned long long)total_bytes, secs,
	       secs > 0 ? (double)total_bytes / secs / 1e6 : 0, tls_handshakes);
	if (opt.rss_pid > 0)
		printf(" rss_base_kib=%lld rss_max_kib=%lld rss_growth_kib=%lld", rss_base, rss_max,
		       rss_max - rss_base);
	printf("%s\n", finished ? "" : " deadline=hit");
	return sessions_err == 0 && finished ? 0 : 1;
}

/* ---- idle ---- */

/* Sessions are opened up to each level of -n (e.g. 1000,5000,10000) in
 * turn; at each level, once all are logged in: PSS, one more session, and
 * NOOP on every held session. Slot `levels_max` is the extra session. */
static int idle_opened, idle_target, idle_extra_slot;
static int idle_levels[16], idle_nlevels;

static bool idle_all_answered(void)
{
	int waiting = 0;
	for (int i = 0; i < idle_target; i++)
		if (conns[i].state != C_FREE && conns[i].state != C_HELD)
			waiting++;
	return waiting == 0 && idle_opened >= idle_target;
}

/* keeps -c logins in flight until idle_target are opened */
static void idle_tick(void)
{
	int inflight = 0;
	for (int i = 0; i < idle_opened; i++)
		if (conns[i].state != C_FREE && conns[i].state != C_HELD)
			inflight++;
	while (inflight < opt.conc && idle_opened < idle_target) {
		struct conn *c = &conns[idle_opened++];
		c->user = c->slot;
		if (conn_open(c) != 0) {
			classify_error(NULL);
			sessions_err++;
			continue;
		}
		inflight++;
	}
}

static bool extra_done(void)
{
	return conns[idle_extra_slot].state == C_FREE;
}

static bool noop_done(void)
{
	for (int i = 0; i < idle_target; i++)
		if (conns[i].state == C_NOOP)
			return false;
	return true;
}

static bool never(void)
{
	return false;
}

static void parse_levels(const char *text)
{
	const char *p = text;
	for (int i = 0; i < 100 && *p != '\0' && idle_nlevels < 16; i++) {
		char *end;
		long v = strtol(p, &end, 10);
		if (end == p || v <= 0 || v > MAX_CONNS - 64 ||
		    (idle_nlevels > 0 && v <= idle_levels[idle_nlevels - 1]))
			die("-n: increasing positive counts separated by commas");
		idle_levels[idle_nlevels++] = (int)v;
		p = *end == ',' ? end + 1 : end;
		if (*end != ',' && *end != '\0')
			die("-n: increasing positive counts separated by commas");
	}
}

static int run_idle(void)
{
	int max = idle_levels[idle_nlevels - 1];
	idle_extra_slot = max;
	setup(max + 1);
	latencies = calloc((size_t)idle_nlevels + 1, sizeof *latencies);
	double start = now(), deadline = start + opt.timeout;
	int failures = 0;
	for (int level = 0; level < idle_nlevels; level++) {
		idle_target = idle_levels[level];
		idle_tick();
		bool opened = run_loop(deadline, idle_all_answered, idle_tick);
		double open_secs = now() - start;
		long held = 0;
		for (int i = 0; i < idle_target; i++)
			if (conns[i].state == C_HELD)
				held++;
		/* let the server settle (login processes, lazy frees) */
		double settle_end = now() + opt.settle;
		run_loop(settle_end < deadline ? settle_end : deadline, never, NULL);
		long long pss = 0;
		size_t procs = 0;
		if (opt.pss_pid > 0)
			pss = tree_sum_kib(opt.pss_pid, "smaps_rollup", "Pss", &procs);
		/* one more full session while the others are held */
		bool extra_ok = false;
		double extra_ms = 0;
		if (opt.extra_user != NULL) {
			struct conn *c = &conns[idle_extra_slot];
			c->extra = true;
			long before = sessions_ok;
			long lat_before = nlat;
			if (conn_open(c) == 0) {
				run_loop(deadline, extra_done, NULL);
				extra_ok = sessions_ok > before && nlat > lat_before;
				if (extra_ok)
					extra_ms = latencies[nlat - 1] * 1e3;
			}
			if (c->state != C_FREE)
				conn_close(c);
		}
		/* are they all still served? */
		for (int i = 0; i < idle_target; i++) {
			if (conns[i].state != C_HELD)
				continue;
			conns[i].state = C_NOOP;
			if (conn_send(&conns[i], "NOOP\r\n") != 0)
				session_failed(&conns[i], NULL);
		}
		run_loop(deadline, noop_done, NULL);
		long alive = 0;
		for (int i = 0; i < idle_target; i++) {
			if (conns[i].state == C_ALIVE) {
				alive++;
				conns[i].state = C_HELD;
			}
		}
		printf("mode=idle target=%d held=%ld alive=%ld pss_kib=%lld procs=%zu extra=%s "
		       "extra_ms=%.1f open_secs=%.2f err=%ld in_use=%ld auth=%ld conn=%ld other=%ld%s\n",
		       idle_target, held, alive, pss, procs, extra_ok ? "ok" : "FAILED", extra_ms,
		       open_secs, sessions_err, err_in_use, err_auth, err_conn, err_other,
		       opened ? "" : " deadline=hit");
		fflush(stdout);
		if (alive != idle_target || !extra_ok)
			failures++;
		if (!opened)
			break;
	}
	for (int i = 0; i <= max; i++)
		if (conns[i].state != C_FREE)
			conn_close(&conns[i]);
	return failures == 0 ? 0 : 1;
}

/* ---- raw: a plain TCP source for the loopback limit ---- */

static char *load_file(const char *path, size_t *len_r)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0 || st.st_size <= 0)
		die("%s: %s", path, fd < 0 ? strerror(errno) : "empty or unreadable");
	char *data = malloc((size_t)st.st_size);
	size_t got = 0;
	for (int i = 0; i < 1000000 && got < (size_t)st.st_size; i++) {
		ssize_t n = read(fd, data + got, (size_t)st.st_size - got);
		if (n <= 0)
			die("%s: read: %s", path, strerror(errno));
		got += (size_t)n;
	}
	close(fd);
	*len_r = got;
	return data;
}

/* The child: accepts `conns` connections and sends on each either
 * `bytes` octets at once (streaming) or, with msg_bytes > 0, msg_bytes
 * octets per request line it reads (one request per message, as RETR),
 * until the client closes. All through epoll; exits by itself. */
static void raw_source(int lfd, int nconn, long long bytes, long long msg_bytes, const char *data,
		       size_t dlen, double deadline)
{
	int ep = epoll_create1(EPOLL_CLOEXEC);
	long long *sent = calloc((size_t)nconn, sizeof *sent);
	long long *owed = calloc((size_t)nconn, sizeof *owed);
	int *fds = calloc((size_t)nconn, sizeof *fds);
	bool rr = msg_bytes > 0;
	int accepted = 0, finished = 0;
	fcntl(lfd, F_SETFL, O_NONBLOCK);
	for (long iter = 0; iter < MAX_LOOP_ITERATIONS && accepted < nconn && now() < deadline;
	     iter++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) {
				struct pollfd p = {.fd = lfd, .events = POLLIN};
				poll(&p, 1, 100);
				continue;
			}
			_exit(3);
		}
		/* as POP3 servers do: no Nagle delay on the last segment */
		int on = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
		fds[accepted] = fd;
		owed[accepted] = rr ? 0 : bytes;
		struct epoll_event ev = {.events = rr ? EPOLLIN : EPOLLOUT,
					 .data.u32 = (uint32_t)accepted};
		epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
		accepted++;
	}
	struct epoll_event events[64];
	char req[4096];
	for (long iter = 0; iter < MAX_LOOP_ITERATIONS && finished < accepted && now() < deadline;
	     iter++) {
		int n = epoll_wait(ep, events, 64, 100);
		for (int i = 0; i < n; i++) {
			uint32_t k = events[i].data.u32;
			bool closed = false;
			if (rr && (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
				ssize_t r = recv(fds[k], req, sizeof req, 0);
				if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
					closed = true;
				for (ssize_t j = 0; j < r; j++)
					if (req[j] == '\n')
						owed[k] += msg_bytes;
			}
			for (int w = 0; !closed && w < 64 && owed[k] > 0; w++) {
				size_t off = (size_t)(sent[k] % (long long)dlen);
				size_t len = dlen - off;
				if ((long long)len > owed[k])
					len = (size_t)owed[k];
				ssize_t m = send(fds[k], data + off, len, MSG_NOSIGNAL);
				if (m <= 0)
					break;
				sent[k] += m;
				owed[k] -= m;
			}
			if (rr && !closed) {
				struct epoll_event ev = {.events = EPOLLIN | (owed[k] > 0 ? EPOLLOUT : 0),
							 .data.u32 = k};
				epoll_ctl(ep, EPOLL_CTL_MOD, fds[k], &ev);
			}
			if (closed || (!rr && owed[k] == 0)) {
				epoll_ctl(ep, EPOLL_CTL_DEL, fds[k], NULL);
				close(fds[k]);
				finished++;
			}
		}
	}
	_exit(finished == nconn ? 0 : 4);
}

static int run_raw(void)
{
	size_t dlen = 0;
	char *data;
	if (opt.file != NULL) {
		data = load_file(opt.file, &dlen);
	} else {
		dlen = 1 << 20;
		data = malloc(dlen);
		for (size_t i = 0; i < dlen; i++)
			data[i] = (i % 78 == 76) ? '\r' : (i % 78 == 77) ? '\n' : (char)('A' + i % 26);
	}
	if (opt.msg_bytes > 0)
		opt.bytes = opt.msg_bytes * (opt.msgs > 0 ? opt.msgs : 1);
	if (opt.bytes <= 0)
		opt.bytes = (long long)dlen;
	int lfd = socket(target.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_storage ss = target;
	if (ss.ss_family == AF_INET)
		((struct sockaddr_in *)&ss)->sin_port = 0;
	else
		((struct sockaddr_in6 *)&ss)->sin6_port = 0;
	socklen_t sl = target_len;
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&ss, sl) != 0 || listen(lfd, 128) != 0 ||
	    getsockname(lfd, (struct sockaddr *)&ss, &sl) != 0)
		die("raw: cannot listen on the loopback: %s", strerror(errno));
	target = ss;
	double deadline = now() + opt.timeout;
	pid_t child = fork();
	if (child < 0)
		die("fork: %s", strerror(errno));
	if (child == 0)
		raw_source(lfd, opt.conns, opt.bytes, opt.msg_bytes, data, dlen, deadline);
	close(lfd);
	setup(opt.conns);
	t_first = now();
	for (int i = 0; i < opt.conns; i++)
		if (conn_open(&conns[i]) != 0)
			die("connect: %s", strerror(errno));
	bool finished = run_loop(deadline, all_free, NULL);
	double secs = t_last > t_first ? t_last - t_first : 0;
	int status = 0;
	/* the child ends by its own deadline; wait for it, bounded */
	for (int i = 0; i < 200; i++) {
		if (waitpid(child, &status, WNOHANG) == child)
			break;
		if (i == 199) {
			kill(child, SIGKILL);
			waitpid(child, &status, 0);
		}
		usleep(50000);
	}
	printf("mode=raw conns=%d ok=%ld bytes=%llu secs=%.3f mbps=%.1f%s\n", opt.conns, sessions_ok,
	       (unsigned long long)total_bytes, secs, secs > 0 ? (double)total_bytes / secs / 1e6 : 0,
	       finished ? "" : " deadline=hit");
	return finished && total_bytes == (unsigned long long)opt.bytes * (unsigned)opt.conns ? 0 : 1;
}

/* ---- main ---- */

/* sessions: a storm ended from outside finishes the sessions under way
 * and reports, as when its -d runs out */
static void on_sigterm(int sig)
{
	stop_requested = 1;
}

static void usage(FILE *out)
{
	fputs("usage: loadgen sessions|retr|idle|raw|probe [options]\n"
	      "  -H HOST        loopback address (127.0.0.1, ::1)    -p PORT\n"
	      "  -n N           sessions (sessions) / sessions to hold (idle)\n"
	      "  -c C           concurrency (sessions) / logins in flight (idle)\n"
	      "  -k K           connections (retr, raw)\n"
	      "  -d SECONDS     sessions: start sessions for this long (-n caps them)\n"
	      "  -T SECONDS     deadline for the whole run (default 120)\n"
	      "  --user FMT     user name, printf with one %d (default u%d)\n"
	      "  --users U      number of users (sessions: slot s uses s and s+C)\n"
	      "  --pass PW      password of every user\n"
	      "  --msgs M       retr: messages 1..M of each maildrop (default all)\n"
	      "  --repeat R     retr: retrieve them R times\n"
	      "  --rss-pid PID  retr: sample VmRSS of PID and its descendants\n"
	      "  --pss-pid PID  idle: sum Pss of PID and its descendants\n"
	      "  --extra-user U idle: the one more session\n"
	      "  --settle S     idle: seconds to wait before measuring (default 1)\n"
	      "  --bytes B      raw: octets per connection   --file F  raw: bytes to send\n"
	      "  --msg-bytes B  raw: B octets per request line, --msgs per connection\n"
	      "  --tls          implicit TLS (POP3S)   --stls  STLS after the greeting\n"
	      "  --resume       offer each slot's last TLS session again (tickets)\n"
	      "  --handshake-only  sessions: greeting, TLS, QUIT (a handshake storm)\n"
	      "  -v             report every failure\n",
	      out);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *m = argv[1];
	if (strcmp(m, "sessions") == 0)
		opt.mode = MODE_SESSIONS;
	else if (strcmp(m, "retr") == 0)
		opt.mode = MODE_RETR;
	else if (strcmp(m, "idle") == 0)
		opt.mode = MODE_IDLE;
	else if (strcmp(m, "raw") == 0)
		opt.mode = MODE_RAW;
	else if (strcmp(m, "probe") == 0)
		opt.mode = MODE_PROBE;
	else if (strcmp(m, "-h") == 0 || strcmp(m, "--help") == 0) {
		usage(stdout);
		return 0;
	} else {
		usage(stderr);
		return 2;
	}
	static const struct option longopts[] = {
		{"user", required_argument, NULL, 'u'},    {"users", required_argument, NULL, 'U'},
		{"pass", required_argument, NULL, 'P'},    {"msgs", required_argument, NULL, 'm'},
		{"repeat", required_argument, NULL, 'r'},  {"rss-pid", required_argument, NULL, 'R'},
		{"pss-pid", required_argument, NULL, 'S'}, {"extra-user", required_argument, NULL, 'x'},
		{"bytes", required_argument, NULL, 'b'},   {"file", required_argument, NULL, 'f'},
		{"settle", required_argument, NULL, 's'},  {"help", no_argument, NULL, 'h'},
		{"duration", required_argument, NULL, 'd'}, {"msg-bytes", required_argument, NULL, 'M'},
		{"tls", no_argument, NULL, 't'},           {"stls", no_argument, NULL, 'L'},
		{"resume", no_argument, NULL, 'Z'},        {"handshake-only", no_argument, NULL, 'O'},
		{NULL, 0, NULL, 0},
	};
	int o;
	optind = 2;
	while ((o = getopt_long(argc, argv, "H:p:n:c:k:T:d:vh", longopts, NULL)) != -1) {
		switch (o) {
		case 'H': opt.host = optarg; break;
		case 'p': opt.port = atoi(optarg); break;
		case 'n':
			opt.total = atoi(optarg);
			if (opt.mode == MODE_IDLE)
				parse_levels(optarg);
			break;
		case 'c': opt.conc = atoi(optarg); break;
		case 'k': opt.conns = atoi(optarg); break;
		case 'T': opt.timeout = atof(optarg); break;
		case 'u': opt.user_fmt = optarg; break;
		case 'U': opt.users = atoi(optarg); break;
		case 'P': opt.pass = optarg; break;
		case 'm': opt.msgs = atoi(optarg); break;
		case 'r': opt.repeat = atoi(optarg); break;
		case 'R': opt.rss_pid = atoi(optarg); break;
		case 'S': opt.pss_pid = atoi(optarg); break;
		case 'x': opt.extra_user = optarg; break;
		case 'b': opt.bytes = atoll(optarg); break;
		case 'f': opt.file = optarg; break;
		case 's': opt.settle = atof(optarg); break;
		case 'd': opt.duration = atof(optarg); break;
		case 'M': opt.msg_bytes = atoll(optarg); break;
		case 'v': opt.verbose = true; break;
		case 't': opt.tls = true; break;
		case 'L': opt.stls = true; break;
		case 'Z': opt.resume = true; break;
		case 'O': opt.handshake_only = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	/* one %d and nothing else that printf would interpret */
	const char *pct = strchr(opt.user_fmt, '%');
	if (pct == NULL || pct[1] != 'd' || strchr(pct + 2, '%') != NULL)
		die("--user: the format needs exactly one %%d");
	if (opt.mode == MODE_IDLE && idle_nlevels == 0)
		parse_levels("1000");
	if (opt.total <= 0 || opt.conc <= 0 || opt.conns <= 0 || opt.users <= 0 || opt.repeat <= 0 ||
	    opt.timeout <= 0 || opt.timeout > 3600 || opt.duration < 0 || opt.duration > 3600)
		die("counts must be positive and -T at most 3600 seconds");
	if (opt.conns > MAX_CONNS || opt.conc > MAX_CONNS || opt.total > 100000000)
		die("too many connections or sessions");
	if (strlen(opt.pass) > 200)
		die("--pass too long");
	if (opt.tls && opt.stls)
		die("--tls or --stls, not both");
	if ((opt.resume || opt.handshake_only) && !opt.tls && !opt.stls)
		die("--resume and --handshake-only need --tls or --stls");
	if ((opt.tls || opt.stls) && opt.mode == MODE_RAW)
		die("raw is plain TCP");
	if (opt.tls || opt.stls)
		tls_init();
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_sigterm);
	set_target(opt.host, opt.port);
	switch (opt.mode) {
	case MODE_SESSIONS: return run_sessions();
	case MODE_RETR: return run_retr();
	case MODE_IDLE: return run_idle();
	case MODE_RAW: return run_raw();
	case MODE_PROBE: return run_probe();
	}
	return 2;
}
