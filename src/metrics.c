/* The daemon's counters, rendered on request (Prometheus text,
 * OpenMetrics, or a table).
 *
 * Each thread counts into a block of its own: only that thread writes it
 * (a relaxed load and store, no locked instruction) and the block sits on
 * cache lines no other thread writes, so the session path neither waits
 * nor moves a cache line between cores however many threads count. A
 * scrape sums the blocks under the registry mutex; a thread that ends
 * folds its block into the totals of the ended ones first, so that no
 * counter goes backwards. */
#include "metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tpops_limits.h"

#define CACHE_LINE 64

/* Read on every hook; written once at start-up, before any thread that
 * counts exists (atomic all the same, for the thread sanitizer). On a
 * line of its own: a line that others write would miss on every read. */
static struct {
	_Alignas(CACHE_LINE) bool on;
	char pad[CACHE_LINE - sizeof(bool)];
} enabled_flag;
#define enabled __atomic_load_n(&enabled_flag.on, __ATOMIC_RELAXED)

static const char *const login_methods[] = {
	"USER", "APOP", "PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256", "other",
};
#define LOGIN_METHODS (sizeof login_methods / sizeof login_methods[0])

/* Upper bounds of the job latency buckets, in seconds: from a lookup in
 * memory to a commit on a busy cluster. */
static const double job_buckets[] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
};
#define JOB_BUCKETS (sizeof job_buckets / sizeof job_buckets[0])

struct histogram {
	uint64_t buckets[JOB_BUCKETS + 1]; /* not cumulative; the last is +Inf */
	uint64_t sum_us;
};

/* What one thread counted. 64-bit words only: a sum adds them word by
 * word (the gauges may be negative in one block; their sum is not). */
struct counters {
	uint64_t accepted;
	uint64_t refused[REFUSAL_KINDS];
	uint64_t logins[LOGIN_METHODS][LOGIN_RESULTS];
	uint64_t holds[HOLD_KINDS];
	uint64_t lmtp[DELIVER_PERMANENT + 1]; /* by enum deliver_result */
	uint64_t retrieved, retrieved_octets;
	uint64_t sendfile_octets;
	uint64_t deleted, deleted_octets;
	uint64_t commits_ok, commits_failed;
	uint64_t tls_ok, tls_failed;
	uint64_t tls_by_kernel, tls_by_openssl;
	uint64_t listing_hits, listing_misses;
	int64_t jobs_queued, jobs_running; /* +1 where queued, -1 where started */
	struct histogram jobs[JOB_KINDS];
};
#define COUNTER_WORDS (sizeof(struct counters) / sizeof(uint64_t))
_Static_assert(sizeof(struct counters) % sizeof(uint64_t) == 0, "counters are 64-bit words");

/* A thread's block, on cache lines of its own. */
struct thread_block {
	_Alignas(CACHE_LINE) struct counters c;
	struct thread_block *next, **prev;
};

static struct {
	pthread_mutex_t mutex;
	struct thread_block *threads; /* the blocks of the threads alive */
	struct counters ended;        /* the sums of the threads that ended */
	pthread_key_t key;            /* its destructor folds a block in */
	pthread_once_t once;
} registry = {.mutex = PTHREAD_MUTEX_INITIALIZER, .once = PTHREAD_ONCE_INIT};

static __thread struct thread_block *mine;

/* Database servers by name, appended once each, never removed: a lookup
 * reads the count and scans without a lock; only a new name takes it.
 * Their counters (connections, errors) are not on the session path:
 * shared relaxed atomics. */
#define DB_HOSTS_MAX 16
struct db_host {
	char name[128];
	uint64_t connects_ok, connects_failed, reconnects, errors;
};

static struct {
	struct db_host hosts[DB_HOSTS_MAX];
	unsigned nhosts;
	pthread_mutex_t hosts_mutex;
	time_t started;
} m = {.hosts_mutex = PTHREAD_MUTEX_INITIALIZER};

#define SHARED_ADD(counter, n) __atomic_add_fetch(&(counter), (n), __ATOMIC_RELAXED)
#define LOAD(counter) __atomic_load_n(&(counter), __ATOMIC_RELAXED)

static void add_words(struct counters *to, const struct counters *from)
{
	uint64_t *t = (uint64_t *)to;
	const uint64_t *f = (const uint64_t *)from;
	for (size_t i = 0; i < COUNTER_WORDS; i++)
		t[i] += __atomic_load_n(&f[i], __ATOMIC_RELAXED);
}

/* At the end of a thread: its counts join those of the ended threads. */
static void thread_ended(void *arg)
{
	struct thread_block *b = arg;
	pthread_mutex_lock(&registry.mutex);
	add_words(&registry.ended, &b->c);
	*b->prev = b->next;
	if (b->next != NULL)
		b->next->prev = b->prev;
	pthread_mutex_unlock(&registry.mutex);
	mine = NULL;
	free(b);
}

static void registry_init(void)
{
	if (pthread_key_create(&registry.key, thread_ended) != 0) {
		fputs("tpops: metrics: cannot make a thread key\n", stderr);
		abort();
	}
}

/* The first count of a thread makes its block. */
static struct counters *thread_block_new(void)
{
	pthread_once(&registry.once, registry_init);
	struct thread_block *b = aligned_alloc(CACHE_LINE, sizeof *b);
	if (b == NULL) {
		fputs("tpops: out of memory\n", stderr);
		abort();
	}
	memset(b, 0, sizeof *b);
	pthread_mutex_lock(&registry.mutex);
	b->next = registry.threads;
	b->prev = &registry.threads;
	if (b->next != NULL)
		b->next->prev = &b->next;
	registry.threads = b;
	pthread_mutex_unlock(&registry.mutex);
	pthread_setspecific(registry.key, b);
	mine = b;
	return &b->c;
}

static inline struct counters *counters(void)
{
	return __builtin_expect(mine != NULL, 1) ? &mine->c : thread_block_new();
}

/* One writer per block: a plain load and store, atomic only so that a
 * scrape's concurrent read is well defined. */
#define ADD(field, n)                                                                              \
	__atomic_store_n(&(field), __atomic_load_n(&(field), __ATOMIC_RELAXED) + (n),              \
			 __ATOMIC_RELAXED)

/* The sums over every thread, alive or ended. */
static void counters_sum(struct counters *total)
{
	pthread_mutex_lock(&registry.mutex);
	*total = registry.ended;
	for (const struct thread_block *b = registry.threads; b != NULL; b = b->next)
		add_words(total, &b->c);
	pthread_mutex_unlock(&registry.mutex);
}

void metrics_enable(void)
{
	__atomic_store_n(&enabled_flag.on, true, __ATOMIC_RELAXED);
	m.started = time(NULL);
}

bool metrics_enabled(void)
{
	return enabled;
}

void metrics_connection_accepted(void)
{
	if (enabled)
		ADD(counters()->accepted, 1);
}

void metrics_connection_refused(enum metric_refusal why)
{
	if (enabled && why < REFUSAL_KINDS)
		ADD(counters()->refused[why], 1);
}

void metrics_login(const char *method, enum metric_login_result result)
{
	if (!enabled || result >= LOGIN_RESULTS)
		return;
	size_t i = 0;
	while (i < LOGIN_METHODS - 1 && (method == NULL || strcmp(method, login_methods[i]) != 0))
		i++;
	ADD(counters()->logins[i][result], 1);
}

void metrics_lmtp_delivery(enum deliver_result result)
{
	if (enabled && (unsigned)result <= DELIVER_PERMANENT)
		ADD(counters()->lmtp[result], 1);
}

void metrics_login_hold(enum metric_hold when)
{
	if (enabled && when < HOLD_KINDS)
		ADD(counters()->holds[when], 1);
}

void metrics_message_retrieved(uint64_t octets)
{
	if (!enabled)
		return;
	struct counters *c = counters();
	ADD(c->retrieved, 1);
	ADD(c->retrieved_octets, octets);
}

void metrics_sendfile_octets(uint64_t octets)
{
	if (enabled)
		ADD(counters()->sendfile_octets, octets);
}

void metrics_messages_deleted(uint64_t count, uint64_t octets)
{
	if (!enabled)
		return;
	struct counters *c = counters();
	ADD(c->deleted, count);
	ADD(c->deleted_octets, octets);
}

void metrics_quit_commit(bool ok)
{
	if (!enabled)
		return;
	struct counters *c = counters();
	if (ok)
		ADD(c->commits_ok, 1);
	else
		ADD(c->commits_failed, 1);
}

void metrics_tls_handshake(bool ok)
{
	if (!enabled)
		return;
	struct counters *c = counters();
	if (ok)
		ADD(c->tls_ok, 1);
	else
		ADD(c->tls_failed, 1);
}

void metrics_tls_session(bool kernel_encrypts)
{
	if (!enabled)
		return;
	struct counters *c = counters();
	if (kernel_encrypts)
		ADD(c->tls_by_kernel, 1);
	else
		ADD(c->tls_by_openssl, 1);
}

void metrics_listing_cache(bool hit)
{
	if (!enabled)
		return;
	struct counters *c = counters();
	if (hit)
		ADD(c->listing_hits, 1);
	else
		ADD(c->listing_misses, 1);
}

double metrics_job_queued(void)
{
	if (!enabled)
		return 0;
	ADD(counters()->jobs_queued, 1);
	return metrics_now();
}

void metrics_job_started(void)
{
	if (!enabled)
		return;
	struct counters *c = counters();
	ADD(c->jobs_queued, -1);
	ADD(c->jobs_running, 1);
}

void metrics_job_observe(enum job_kind kind, double seconds)
{
	if (!enabled || kind >= JOB_KINDS)
		return;
	size_t b = 0;
	while (b < JOB_BUCKETS && seconds > job_buckets[b])
		b++;
	struct histogram *h = &counters()->jobs[kind];
	ADD(h->buckets[b], 1);
	ADD(h->sum_us, seconds > 0 ? (uint64_t)(seconds * 1e6) : 0);
}

void metrics_job_finished(enum job_kind kind, double seconds)
{
	if (!enabled)
		return;
	ADD(counters()->jobs_running, -1);
	metrics_job_observe(kind, seconds);
}

double metrics_now(void)
{
	if (!enabled)
		return 0; /* nothing is timed: no clock read either */
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The slot of a database server, made on first sight; NULL when the table
 * is full (more servers than any configuration names). */
static struct db_host *db_host(const char *name)
{
	if (name == NULL || *name == '\0')
		name = "localhost";
	unsigned n = __atomic_load_n(&m.nhosts, __ATOMIC_ACQUIRE);
	for (unsigned i = 0; i < n; i++)
		if (strcmp(m.hosts[i].name, name) == 0)
			return &m.hosts[i];
	pthread_mutex_lock(&m.hosts_mutex);
	struct db_host *h = NULL;
	n = m.nhosts;
	for (unsigned i = 0; i < n && h == NULL; i++)
		if (strcmp(m.hosts[i].name, name) == 0)
			h = &m.hosts[i];
	if (h == NULL && n < DB_HOSTS_MAX) {
		h = &m.hosts[n];
		snprintf(h->name, sizeof h->name, "%s", name);
		__atomic_store_n(&m.nhosts, n + 1, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&m.hosts_mutex);
	return h;
}

/* Whether this thread has had a database connection before. */
static __thread bool thread_had_connection;

void metrics_db_connect(const char *host, bool ok)
{
	if (!enabled)
		return;
	struct db_host *h = db_host(host);
	if (h == NULL)
		return;
	SHARED_ADD(*(ok ? &h->connects_ok : &h->connects_failed), 1);
	if (ok && thread_had_connection)
		SHARED_ADD(h->reconnects, 1);
	if (ok)
		thread_had_connection = true;
}

void metrics_db_error(const char *host)
{
	if (!enabled)
		return;
	struct db_host *h = db_host(host);
	if (h != NULL)
		SHARED_ADD(h->errors, 1);
}

static const char *const session_state_names[SESSION_STATES] = {
	[SESSION_AUTHORIZATION] = "authorization", [SESSION_TRANSACTION] = "transaction",
	[SESSION_STREAMING] = "streaming",         [SESSION_WAITING_STORAGE] = "waiting_storage",
	[SESSION_LOGIN_DELAY] = "login_delay",     [SESSION_CLOSING] = "closing",
};

const char *metrics_session_state_name(enum metric_session_state state)
{
	return state < SESSION_STATES ? session_state_names[state] : "unknown";
}

/* ---- rendering ---- */

enum family_type { COUNTER, GAUGE, HISTOGRAM };

struct render {
	struct buf *out;
	enum metrics_format format;
	const char *name; /* of the family being written, without _total */
	enum family_type type;
	const char *help;
};

/* A label value in the exposition formats: backslash, quote and line
 * feed escaped. */
static void label_value(struct buf *out, const char *v)
{
	for (; *v != '\0'; v++) {
		if (*v == '\\' || *v == '"')
			buf_printf(out, "\\%c", *v);
		else if (*v == '\n')
			buf_append_str(out, "\\n");
		else
			buf_append_char(out, *v);
	}
}

static void family(struct render *r, const char *name, enum family_type type, const char *help)
{
	static const char *const type_names[] = {"counter", "gauge", "histogram"};
	r->name = name;
	r->type = type;
	r->help = help;
	if (r->format == METRICS_TABLE) {
		buf_printf(r->out, "%s\n", help);
		return;
	}
	/* Prometheus 0.0.4 names a counter's family with its _total;
	 * OpenMetrics without it */
	const char *suffix = type == COUNTER && r->format == METRICS_PROMETHEUS ? "_total" : "";
	buf_printf(r->out, "# HELP %s%s %s\n", name, suffix, help);
	buf_printf(r->out, "# TYPE %s%s %s\n", name, suffix, type_names[type]);
}

/* One sample. labels: "key", "value" pairs, NULL-terminated; suffix
 * after the family name (_bucket, _sum, _count; _total for counters is
 * added here). */
static void sample_text(struct render *r, const char *suffix, const char *const *labels,
			const char *value)
{
	if (r->format == METRICS_TABLE) {
		char row[256];
		size_t len = (size_t)snprintf(row, sizeof row, "  %s", *suffix ? suffix + 1 : "");
		for (size_t i = 0; labels != NULL && labels[i] != NULL && len < sizeof row; i += 2)
			len += (size_t)snprintf(row + len, sizeof row - len, "%s%s=%s",
						len > 2 ? " " : "", labels[i], labels[i + 1]);
		if (len <= 2)
			snprintf(row, sizeof row, "  total");
		buf_printf(r->out, "%-60s %16s\n", row, value);
		return;
	}
	buf_printf(r->out, "%s%s%s", r->name, suffix,
		   r->type == COUNTER && *suffix == '\0' ? "_total" : "");
	if (labels != NULL && labels[0] != NULL) {
		buf_append_char(r->out, '{');
		for (size_t i = 0; labels[i] != NULL; i += 2) {
			buf_printf(r->out, "%s%s=\"", i > 0 ? "," : "", labels[i]);
			label_value(r->out, labels[i + 1]);
			buf_append_char(r->out, '"');
		}
		buf_append_char(r->out, '}');
	}
	buf_printf(r->out, " %s\n", value);
}

static void sample(struct render *r, const char *const *labels, uint64_t value)
{
	char v[32];
	snprintf(v, sizeof v, "%llu", (unsigned long long)value);
	sample_text(r, "", labels, v);
}

static void sample_gauge(struct render *r, const char *const *labels, int64_t value)
{
	char v[32];
	snprintf(v, sizeof v, "%lld", (long long)value);
	sample_text(r, "", labels, v);
}

static const char *const refusal_names[REFUSAL_KINDS] = {
	[REFUSED_TOTAL_LIMIT] = "total_limit",   [REFUSED_PER_IP_LIMIT] = "per_ip_limit",
	[REFUSED_TLS_REQUIRED] = "tls_required", [REFUSED_SHUTTING_DOWN] = "shutting_down",
	[REFUSED_PROXY_HEADER] = "proxy_header",
};
static const char *const login_result_names[LOGIN_RESULTS] = {
	[LOGIN_RESULT_OK] = "ok",
	[LOGIN_RESULT_FAILED] = "failed",
	[LOGIN_RESULT_IN_USE] = "in_use",
	[LOGIN_RESULT_TEMPORARY] = "temporary_error",
	[LOGIN_RESULT_PERMANENT] = "permanent_error",
};
static const char *const hold_names[HOLD_KINDS] = {
	[HOLD_BEFORE_CHECK] = "before_check",
	[HOLD_AFTER_FAILURE] = "after_failure",
};
static const char *const job_names[JOB_KINDS] = {
	[JOB_OTHER] = "other",           [JOB_LOGIN] = "login",   [JOB_LISTING] = "listing",
	[JOB_RETR_PIECE] = "retr_piece", [JOB_COMMIT] = "commit", [JOB_LEASE] = "lease",
};

static void render_histogram(struct render *r, const struct histogram *h, enum job_kind kind)
{
	const char *labels[] = {"kind", job_names[kind], NULL, NULL, NULL};
	uint64_t cumulative = 0;
	char le[32], v[32];
	if (r->format == METRICS_TABLE) {
		for (size_t b = 0; b <= JOB_BUCKETS; b++)
			cumulative += h->buckets[b];
		uint64_t sum_us = h->sum_us;
		snprintf(v, sizeof v, "%llu jobs, mean %.1f ms", (unsigned long long)cumulative,
			 cumulative ? (double)sum_us / 1000.0 / (double)cumulative : 0.0);
		sample_text(r, "", labels, v);
		return;
	}
	for (size_t b = 0; b <= JOB_BUCKETS; b++) {
		cumulative += h->buckets[b];
		if (b < JOB_BUCKETS)
			snprintf(le, sizeof le, "%g", job_buckets[b]);
		else
			snprintf(le, sizeof le, "+Inf");
		labels[2] = "le";
		labels[3] = le;
		snprintf(v, sizeof v, "%llu", (unsigned long long)cumulative);
		sample_text(r, "_bucket", labels, v);
	}
	labels[2] = NULL;
	snprintf(v, sizeof v, "%.6f", (double)h->sum_us / 1e6);
	sample_text(r, "_sum", labels, v);
	snprintf(v, sizeof v, "%llu", (unsigned long long)cumulative);
	sample_text(r, "_count", labels, v);
}

void metrics_render(struct buf *out, enum metrics_format format, const struct metrics_live *live)
{
	struct render r = {.out = out, .format = format};
	struct counters c;
	counters_sum(&c);

	family(&r, "tpops_build_info", GAUGE, "The version of tpops serving.");
	sample(&r, (const char *[]){"version", TPOPS_VERSION, NULL}, 1);
	family(&r, "tpops_start_time_seconds", GAUGE, "When the daemon started (Unix time).");
	sample(&r, NULL, (uint64_t)m.started);
	if (live->probing) {
		family(&r, "tpops_up", GAUGE,
		       "1 while the daemon accepts connections and a database connection works "
		       "(GET /health).");
		sample(&r, NULL, live->healthy);
		family(&r, "tpops_database_up", GAUGE, "1 when the last database probe worked.");
		sample(&r, NULL, live->database_up);
	}

	family(&r, "tpops_connections_accepted", COUNTER, "Connections accepted.");
	sample(&r, NULL, c.accepted);
	family(&r, "tpops_connections_refused", COUNTER,
	       "Connections (or, for tls_required, login attempts) refused, by reason.");
	for (int i = 0; i < REFUSAL_KINDS; i++)
		sample(&r, (const char *[]){"reason", refusal_names[i], NULL}, c.refused[i]);
	family(&r, "tpops_connections_open", GAUGE,
	       "Connections open, counted against MaxConnections.");
	sample(&r, NULL, live->connections_open);
	family(&r, "tpops_sessions", GAUGE, "Sessions now, by state.");
	for (int i = 0; i < SESSION_STATES; i++)
		sample(&r, (const char *[]){"state", session_state_names[i], NULL},
		       live->sessions[i]);
	family(&r, "tpops_io_threads_answering", GAUGE,
	       "I/O threads that answered the last census in time.");
	sample(&r, NULL, live->loops_answered);

	family(&r, "tpops_logins", COUNTER, "Login attempts by method and result.");
	for (size_t i = 0; i < LOGIN_METHODS; i++)
		for (int j = 0; j < LOGIN_RESULTS; j++)
			sample(&r,
			       (const char *[]){"method", login_methods[i], "result",
						login_result_names[j], NULL},
			       c.logins[i][j]);
	family(&r, "tpops_login_holds", COUNTER,
	       "Login answers held back by the failed-login delay (AuthFailureDelay).");
	for (int i = 0; i < HOLD_KINDS; i++)
		sample(&r, (const char *[]){"when", hold_names[i], NULL}, c.holds[i]);

	static const char *const lmtp_result_names[DELIVER_PERMANENT + 1] = {
		[DELIVER_STORED] = "stored",
		[DELIVER_UNKNOWN] = "unknown_user",
		[DELIVER_OVER_QUOTA] = "over_quota",
		[DELIVER_TEMPORARY] = "temporary_error",
		[DELIVER_PERMANENT] = "permanent_error",
	};
	family(&r, "tpops_lmtp_deliveries", COUNTER,
	       "LMTP recipients by outcome: stored, or refused at RCPT or after DATA.");
	for (int i = 0; i <= DELIVER_PERMANENT; i++)
		sample(&r, (const char *[]){"result", lmtp_result_names[i], NULL}, c.lmtp[i]);

	family(&r, "tpops_messages_retrieved", COUNTER, "Messages sent whole by RETR.");
	sample(&r, NULL, c.retrieved);
	family(&r, "tpops_retrieved_bytes", COUNTER,
	       "Octets of the messages sent by RETR (their POP3 sizes).");
	sample(&r, NULL, c.retrieved_octets);
	family(&r, "tpops_retrieved_sendfile_bytes", COUNTER,
	       "Octets of RETR that the kernel sent straight from the message's Maildir file "
	       "(kernel TLS and SSL_sendfile), without a copy through tpops.");
	sample(&r, NULL, c.sendfile_octets);
	family(&r, "tpops_messages_deleted", COUNTER, "Messages deleted by a committed QUIT.");
	sample(&r, NULL, c.deleted);
	family(&r, "tpops_deleted_bytes", COUNTER, "Octets of the messages deleted.");
	sample(&r, NULL, c.deleted_octets);
	family(&r, "tpops_quit_commits", COUNTER, "QUIT commits in the UPDATE state, by result.");
	sample(&r, (const char *[]){"result", "ok", NULL}, c.commits_ok);
	sample(&r, (const char *[]){"result", "failed", NULL}, c.commits_failed);
	family(&r, "tpops_tls_handshakes", COUNTER, "TLS handshakes (POP3S and STLS), by result.");
	sample(&r, (const char *[]){"result", "ok", NULL}, c.tls_ok);
	sample(&r, (const char *[]){"result", "failed", NULL}, c.tls_failed);
	family(&r, "tpops_tls_sessions", COUNTER,
	       "TLS sessions whose handshake finished, by who encrypts their records: "
	       "the kernel (kTLS) or OpenSSL in user space.");
	sample(&r, (const char *[]){"encrypted_by", "kernel", NULL}, c.tls_by_kernel);
	sample(&r, (const char *[]){"encrypted_by", "openssl", NULL}, c.tls_by_openssl);

	family(&r, "tpops_storage_jobs_queued", GAUGE, "Storage jobs waiting for a worker.");
	sample_gauge(&r, NULL, c.jobs_queued);
	family(&r, "tpops_storage_jobs_running", GAUGE, "Storage jobs a worker is running.");
	sample_gauge(&r, NULL, c.jobs_running);
	family(&r, "tpops_storage_job_duration_seconds", HISTOGRAM,
	       "Storage jobs from submission to the end of their work, by kind.");
	for (int k = 0; k < JOB_KINDS; k++)
		render_histogram(&r, &c.jobs[k], (enum job_kind)k);

	unsigned nhosts = __atomic_load_n(&m.nhosts, __ATOMIC_ACQUIRE);
	family(&r, "tpops_db_connections", COUNTER,
	       "Database connection attempts, by server and result.");
	for (unsigned i = 0; i < nhosts; i++) {
		sample(&r, (const char *[]){"host", m.hosts[i].name, "result", "ok", NULL},
		       LOAD(m.hosts[i].connects_ok));
		sample(&r, (const char *[]){"host", m.hosts[i].name, "result", "failed", NULL},
		       LOAD(m.hosts[i].connects_failed));
	}
	family(&r, "tpops_db_reconnects", COUNTER,
	       "Database connections opened to replace a lost or dropped one, by server.");
	for (unsigned i = 0; i < nhosts; i++)
		sample(&r, (const char *[]){"host", m.hosts[i].name, NULL},
		       LOAD(m.hosts[i].reconnects));
	family(&r, "tpops_db_errors", COUNTER, "Failed database statements, by server.");
	for (unsigned i = 0; i < nhosts; i++)
		sample(&r, (const char *[]){"host", m.hosts[i].name, NULL},
		       LOAD(m.hosts[i].errors));

	family(&r, "tpops_maildir_listing_cache", COUNTER,
	       "Maildir logins served from the listing cache (hit) or by reading the directories "
	       "(miss).");
	sample(&r, (const char *[]){"result", "hit", NULL}, c.listing_hits);
	sample(&r, (const char *[]){"result", "miss", NULL}, c.listing_misses);

	if (format == METRICS_OPENMETRICS)
		buf_append_str(out, "# EOF\n");
}
