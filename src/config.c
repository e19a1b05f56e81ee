/* tpops.conf -> struct config: one key table, one line parser, file:line errors. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <unistd.h>

#include "buf.h"
#include "sasl.h"
#include "tpops_limits.h"
#include "xalloc.h"

/* A configuration line is a key and a short value; anything longer is not
 * a configuration file (or is an editor accident), and the bound keeps the
 * per-line copy on the stack. */
#define CONFIG_MAX_LINE 4096

/* config_load refuses bigger files: a real tpops.conf is a few KiB, and a
 * path pointing at a log or a device must not be read into memory. */
#define CONFIG_MAX_SIZE (1024 * 1024)

/* src/limits.h shadows the system <limits.h> under -Isrc, so the largest int comes
 * from the compiler's own macro. */
#define CONFIG_INT_MAX __INT_MAX__

/* How much of a bad value is quoted back in an error message. */
#define QUOTE_MAX 64

enum key_type {
	KEY_INT,      /* int in [min, max] */
	KEY_BOOL,     /* yes/no, true/false, on/off, 1/0 */
	KEY_ENUM,     /* one of names[] */
	KEY_STRING,   /* a string that must not be empty */
	KEY_OPTIONAL, /* a string; an empty value means "none" (NULL) */
	KEY_SECRET,   /* a string that may be empty; wiped when freed */
	KEY_HOSTNAME, /* one printable word, shown in the greeting */
	KEY_LISTEN,   /* the Listen address list */
	KEY_MECHS,    /* a list of SASL mechanism names */
	KEY_METRICS,  /* MetricsListen: ADDRESS:PORT [public], or a socket path */
	KEY_SOCKET,   /* an absolute path for a Unix socket; empty or "none": none */
};

struct enum_name {
	const char *name; /* spelled as documented; compared case-insensitively */
	int value;
};

struct key {
	const char *name; /* spelled as documented: used in messages */
	enum key_type type;
	size_t offset; /* of the field in struct config */
	int min, max;  /* KEY_INT */
	const struct enum_name *names; /* KEY_ENUM, NULL-terminated */
	const char *what; /* string keys: what the value is, for messages */
};

static const struct enum_name mailbox_names[] = {
	{"MySQL", MAILBOX_SQL},
	{"Database", MAILBOX_SQL}, /* the SQL store of whichever Database is set */
	{"Maildir", MAILBOX_MAILDIR},
	{NULL, 0},
};
static const struct enum_name database_names[] = {
	{"sqlite", DATABASE_SQLITE},
	{"mysql", DATABASE_MYSQL},
	{NULL, 0},
};
static const struct enum_name log_names[] = {
	{"syslog", LOG_TO_SYSLOG},
	{"stderr", LOG_TO_STDERR},
	{NULL, 0},
};
static const struct enum_name log_level_names[] = {
	{"error", LOGLEVEL_ERROR},
	{"info", LOGLEVEL_INFO},
	{"debug", LOGLEVEL_DEBUG},
	{NULL, 0},
};

static const struct enum_name facility_names[] = {
	{"mail", LOG_MAIL},     {"daemon", LOG_DAEMON}, {"auth", LOG_AUTH},
	{"authpriv", LOG_AUTHPRIV}, {"user", LOG_USER}, {"local0", LOG_LOCAL0},
	{"local1", LOG_LOCAL1}, {"local2", LOG_LOCAL2}, {"local3", LOG_LOCAL3},
	{"local4", LOG_LOCAL4}, {"local5", LOG_LOCAL5}, {"local6", LOG_LOCAL6},
	{"local7", LOG_LOCAL7}, {NULL, 0},
};

/* Enum fields are set through an int pointer: every config enum must have
 * the size of an int (and, having no negative values, is compatible with
 * unsigned int, which an int lvalue may alias). */
_Static_assert(sizeof(enum config_mailbox) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_database) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_log) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_log_level) == sizeof(int), "enum size");

#define INT_KEY(n, f, lo, hi) {n, KEY_INT, offsetof(struct config, f), lo, hi, NULL, NULL}
#define BOOL_KEY(n, f) {n, KEY_BOOL, offsetof(struct config, f), 0, 0, NULL, NULL}
#define ENUM_KEY(n, f, t) {n, KEY_ENUM, offsetof(struct config, f), 0, 0, t, NULL}
#define STR_KEY(n, ty, f, w) {n, ty, offsetof(struct config, f), 0, 0, NULL, w}

/* Every key of SPEC section 2, one row each. */
static const struct key keys[] = {
	INT_KEY("Port", port, 1, 65535),
	STR_KEY("Hostname", KEY_HOSTNAME, hostname, "a host name"),
	INT_KEY("ConnectionKeepTime", connection_keep_time, 1, CONFIG_INT_MAX),
	INT_KEY("CommandTimeout", command_timeout, 1, CONFIG_INT_MAX),
	ENUM_KEY("Mailbox", mailbox, mailbox_names),
	STR_KEY("MySQL_Server", KEY_STRING, mysql_server, "a host name or address"),
	STR_KEY("MySQL_User", KEY_STRING, mysql_user, "a user name"),
	/* An empty password is a real (if unwise) MySQL setting. */
	STR_KEY("MySQL_Pass", KEY_SECRET, mysql_pass, "a password"),
	STR_KEY("MySQL_DB", KEY_STRING, mysql_db, "a database name"),
	ENUM_KEY("Database", database, database_names),
	STR_KEY("SQLite_Path", KEY_STRING, sqlite_path, "a file name"),
	INT_KEY("MySQL_Port", mysql_port, 1, 65535),
	STR_KEY("MySQL_Socket", KEY_OPTIONAL, mysql_socket, "a socket path"),
	INT_KEY("MySQL_FailbackTime", mysql_failback_time, 0, 86400),
	STR_KEY("Listen", KEY_LISTEN, listen, "IPv4 or IPv6 addresses separated by spaces"),
	INT_KEY("TLS_Port", tls_port, 0, 65535),
	STR_KEY("TLS_Cert", KEY_OPTIONAL, tls_cert, "a file name"),
	STR_KEY("TLS_Key", KEY_OPTIONAL, tls_key, "a file name"),
	BOOL_KEY("RequireTLS", require_tls),
	INT_KEY("TLS_TicketKeyLifetime", tls_ticket_key_lifetime, 1, 7 * 86400),
	STR_KEY("MaildirRoot", KEY_OPTIONAL, maildir_root, "a directory"),
	STR_KEY("User", KEY_STRING, user, "a user name"),
	STR_KEY("Group", KEY_STRING, group, "a group name"),
	INT_KEY("MaxConnections", max_connections, 1, CONFIG_INT_MAX),
	INT_KEY("MaxConnectionsPerIP", max_connections_per_ip, 1, CONFIG_INT_MAX),
	INT_KEY("AuthFailureDelay", auth_failure_delay, 0, 60),
	INT_KEY("LockLease", lock_lease, 5, 86400),
	ENUM_KEY("Log", log, log_names),
	ENUM_KEY("LogLevel", log_level, log_level_names),
	STR_KEY("PidFile", KEY_OPTIONAL, pid_file, "a file name"),
	BOOL_KEY("Foreground", foreground),
	ENUM_KEY("SyslogFacility", syslog_facility, facility_names),
	STR_KEY("AuthMechanisms", KEY_MECHS, auth_mechanisms,
		"SASL mechanisms separated by spaces (PLAIN LOGIN CRAM-MD5 SCRAM-SHA-256), or none"),
	STR_KEY("AuthSecret", KEY_SECRET, auth_secret, "a secret string"),
	BOOL_KEY("AllowPlaintextFromLoopback", plaintext_loopback),
	INT_KEY("AuthFailureDelayMax", auth_failure_delay_max, 0, 3600),
	BOOL_KEY("ProxyProtocol", proxy_protocol),
	BOOL_KEY("APOP", apop),
	INT_KEY("IOThreads", io_threads, 0, 64),
	INT_KEY("Workers", workers, 0, 256),
	STR_KEY("LMTP_Listen", KEY_OPTIONAL, lmtp_listen,
		"an absolute socket path, or inet:ADDRESS:PORT"),
	INT_KEY("LMTP_MaxMessageSize", lmtp_max_message_size, 1024, CONFIG_INT_MAX),
	INT_KEY("LMTP_Timeout", lmtp_timeout, 1, 86400),
	INT_KEY("LMTP_MaxConnections", lmtp_max_connections, 1, 100000),
	STR_KEY("ControlSocket", KEY_SOCKET, control_socket,
		"an absolute path of at most 107 bytes, or none"),
	STR_KEY("MetricsListen", KEY_METRICS, metrics_listen,
		"ADDRESS:PORT ([::1]:PORT for IPv6), followed by \"public\" when the address "
		"is not loopback, or the absolute path of a Unix socket"),
};
#define NKEYS (sizeof(keys) / sizeof(keys[0]))

static const struct {
	const char *word;
	bool value;
} bool_words[] = {
	{"yes", true}, {"no", false}, {"true", true}, {"false", false},
	{"on", true},  {"off", false}, {"1", true},   {"0", false},
};

static bool is_string_type(enum key_type t)
{
	return t == KEY_STRING || t == KEY_OPTIONAL || t == KEY_SECRET || t == KEY_HOSTNAME ||
	       t == KEY_METRICS || t == KEY_SOCKET;
}

static char **field_str(struct config *cfg, const struct key *k)
{
	return (char **)((char *)cfg + k->offset);
}

static int *field_int(struct config *cfg, const struct key *k)
{
	return (int *)((char *)cfg + k->offset);
}

static bool *field_bool(struct config *cfg, const struct key *k)
{
	return (bool *)((char *)cfg + k->offset);
}

static void free_string(char **p, bool secret)
{
	if (*p != NULL && secret)
		wipe(*p, strlen(*p));
	free(*p);
	*p = NULL;
}

static void free_list(char ***p)
{
	if (*p != NULL) {
		for (char **a = *p; *a != NULL; a++)
			free(*a);
		free(*p);
	}
	*p = NULL;
}

void config_defaults(struct config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->port = DEFAULT_PORT;

	/* HOST_NAME_MAX is 64 on Linux; the extra byte is the terminator
	 * gethostname() leaves out when the name is truncated. */
	char host[256];
	if (gethostname(host, sizeof(host) - 1) != 0)
		host[0] = '\0';
	host[sizeof(host) - 1] = '\0';
	cfg->hostname = xstrdup(host[0] != '\0' ? host : "localhost");

	cfg->connection_keep_time = DEFAULT_CONNECTION_KEEP_TIME;
	cfg->command_timeout = DEFAULT_COMMAND_TIMEOUT;
	cfg->mailbox = MAILBOX_SQL;
	cfg->database = DATABASE_SQLITE;
	cfg->sqlite_path = xstrdup(DEFAULT_SQLITE_PATH);
	cfg->mysql_port = 3306;
	cfg->mysql_failback_time = DEFAULT_MYSQL_FAILBACK_TIME;
	cfg->listen = xcalloc(3, sizeof(char *));
	cfg->listen[0] = xstrdup("0.0.0.0");
	cfg->listen[1] = xstrdup("::");
	cfg->tls_port = -1;
	cfg->require_tls = false;
	cfg->tls_ticket_key_lifetime = DEFAULT_TLS_TICKET_KEY_LIFETIME;
	cfg->user = xstrdup(DEFAULT_RUN_USER);
	cfg->group = xstrdup(DEFAULT_RUN_GROUP);
	cfg->max_connections = DEFAULT_MAX_CONNECTIONS;
	cfg->max_connections_per_ip = DEFAULT_MAX_CONNECTIONS_PER_IP;
	cfg->auth_failure_delay = DEFAULT_AUTH_FAILURE_DELAY;
	cfg->lock_lease = DEFAULT_LOCK_LEASE;
	cfg->log = LOG_TO_SYSLOG;
	cfg->log_level = LOGLEVEL_INFO;
	cfg->foreground = false;
	cfg->io_threads = 0;
	cfg->workers = 0;
	cfg->lmtp_max_message_size = DEFAULT_LMTP_MAX_MESSAGE_SIZE;
	cfg->lmtp_timeout = DEFAULT_LMTP_TIMEOUT;
	cfg->lmtp_max_connections = DEFAULT_LMTP_MAX_CONNECTIONS;
	cfg->syslog_facility = LOG_MAIL;
	/* Mechanisms that work with every password scheme; CRAM-MD5 and
	 * SCRAM-SHA-256 need plaintext (or SCRAM) stored passwords, so the
	 * administrator turns them on knowingly. */
	cfg->auth_mechanisms = xcalloc(3, sizeof(char *));
	cfg->auth_mechanisms[0] = xstrdup("PLAIN");
	cfg->auth_mechanisms[1] = xstrdup("LOGIN");
	cfg->plaintext_loopback = false;
	cfg->auth_failure_delay_max = DEFAULT_AUTH_FAILURE_DELAY_MAX;
	cfg->proxy_protocol = false;
	cfg->control_socket = xstrdup(DEFAULT_CONTROL_SOCKET);
	cfg->metrics_listen = NULL;
	/* APOP needs plaintext-stored passwords, which new installations do
	 * not have: clients that see the greeting's timestamp try APOP first
	 * and fail (or stop) against hashed passwords. */
	cfg->apop = false;
}

void config_free(struct config *cfg)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (is_string_type(keys[i].type))
			free_string(field_str(cfg, &keys[i]), keys[i].type == KEY_SECRET);
	free_list(&cfg->listen);
	free_list(&cfg->auth_mechanisms);
	free_string(&cfg->path, false);
}

/* The error context of one line. */
struct where {
	const char *name;
	unsigned line;
	char *err;
	size_t errlen;
};

__attribute__((format(printf, 2, 3))) static int fail(const struct where *w, const char *fmt, ...)
{
	if (w->err == NULL || w->errlen == 0)
		return -1;
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	str_format(w->err, w->errlen, "%s:%u: %s", w->name, w->line, msg);
	return -1;
}

/* Quotes text for a message: the file may hold anything, and the message
 * ends up in a log or on a terminal, so only printable ASCII goes out. */
static const char *quote(char *dst, size_t size, const char *s, size_t len)
{
	struct buf b = BUF_INIT;
	buf_append_char(&b, '"');
	for (size_t i = 0; i < len && i < QUOTE_MAX; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\')
			buf_printf(&b, "\\%c", c);
		else if (c >= 0x20 && c < 0x7f)
			buf_append_char(&b, (char)c);
		else
			buf_printf(&b, "\\x%02x", c);
	}
	buf_append_str(&b, len > QUOTE_MAX ? "\"..." : "\"");
	str_copy(dst, size, buf_cstr(&b));
	buf_free(&b);
	return dst;
}

/* What a key expects, for messages. */
static const char *expected(const struct key *k, char *dst, size_t size)
{
	switch (k->type) {
	case KEY_INT:
		if (k->max == CONFIG_INT_MAX)
			str_format(dst, size, "a number of at least %d", k->min);
		else
			str_format(dst, size, "a number from %d to %d", k->min, k->max);
		break;
	case KEY_BOOL:
		str_copy(dst, size, "yes or no");
		break;
	case KEY_ENUM: {
		size_t n = 0;
		while (k->names[n].name != NULL)
			n++;
		struct buf b = BUF_INIT;
		if (n > 2)
			buf_append_str(&b, "one of ");
		for (size_t i = 0; i < n; i++) {
			if (i > 0)
				buf_append_str(&b, n > 2 ? ", " : " or ");
			buf_append_str(&b, k->names[i].name);
		}
		str_copy(dst, size, buf_cstr(&b));
		buf_free(&b);
		break;
	}
	default:
		str_copy(dst, size, k->what);
		break;
	}
	return dst;
}

static int bad_value(const struct where *w, const struct key *k, const char *v)
{
	char q[QUOTE_MAX * 4 + 8], e[128];
	return fail(w, "%s: %s is not %s", k->name, quote(q, sizeof(q), v, strlen(v)),
		    expected(k, e, sizeof(e)));
}

/* Decimal digits only: no sign, no spaces, no hex, no overflow. */
static int parse_int(const char *v, int min, int max, int *out)
{
	long long n = 0;
	if (*v == '\0')
		return -1;
	for (const char *p = v; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		n = n * 10 + (*p - '0');
		if (n > max) /* also stops any overflow of n */
			return -1;
	}
	if (n < min)
		return -1;
	*out = (int)n;
	return 0;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t';
}

/* Listen: every address is checked here so that a typo stops the daemon
 * with the line number, not at bind() time with an errno. */
static int set_listen(struct config *cfg, const struct key *k, const char *v,
		      const struct where *w)
{
	size_t n = 0, cap = 4;
	char **list = xcalloc(cap, sizeof(char *));
	unsigned char (*bin)[sizeof(struct in6_addr) + 1] = xcalloc(cap, sizeof(*bin));
	char q[QUOTE_MAX * 4 + 8];
	const char *p = v;
	int rc = 0;

	for (;;) {
		while (is_space(*p))
			p++;
		if (*p == '\0')
			break;
		const char *start = p;
		while (*p != '\0' && !is_space(*p))
			p++;
		size_t len = (size_t)(p - start);
		const char *a = start;
		size_t alen = len;
		if (len >= 2 && a[0] == '[' && a[len - 1] == ']') {
			a++;
			alen -= 2;
		}
		char addr[INET6_ADDRSTRLEN + 1];
		unsigned char key[sizeof(struct in6_addr) + 1] = {0};
		bool ok = alen > 0 && alen < sizeof(addr);
		if (ok) {
			memcpy(addr, a, alen);
			addr[alen] = '\0';
			if (inet_pton(AF_INET, addr, key + 1) == 1)
				key[0] = 4;
			else if (inet_pton(AF_INET6, addr, key + 1) == 1)
				key[0] = 6;
			else
				ok = false;
		}
		if (!ok) {
			rc = fail(w, "%s: %s is not an IPv4 or IPv6 address", k->name,
				  quote(q, sizeof(q), start, len));
			break;
		}
		/* The same address twice would fail at bind() with EADDRINUSE. */
		for (size_t i = 0; i < n; i++)
			if (memcmp(bin[i], key, sizeof(key)) == 0) {
				rc = fail(w, "%s: %s is given twice", k->name,
					  quote(q, sizeof(q), start, len));
				break;
			}
		if (rc != 0)
			break;
		if (n + 2 > cap) {
			cap *= 2;
			list = xrealloc(list, cap * sizeof(char *));
			bin = xrealloc(bin, cap * sizeof(*bin));
		}
		memcpy(bin[n], key, sizeof(key));
		list[n++] = xstrdup(addr);
		list[n] = NULL;
	}
	free(bin);
	if (rc == 0 && n == 0) {
		char e[128];
		rc = fail(w, "%s: no value; expected %s", k->name, expected(k, e, sizeof(e)));
	}
	if (rc != 0) {
		free_list(&list);
		return rc;
	}
	free_list(&cfg->listen);
	cfg->listen = list;
	return 0;
}

static bool is_loopback(const char *addr)
{
	struct in_addr a4;
	struct in6_addr a6;
	if (inet_pton(AF_INET, addr, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, addr, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6) ||
		       (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
	return false;
}

/* MetricsListen: "127.0.0.1:9110", "[::1]:9110", "/run/tpops/metrics",
 * or "none"; an address that is not loopback needs the word "public"
 * after it, so that the metrics are never published by accident. */
static int set_metrics(struct config *cfg, const struct key *k, const char *v,
		       const struct where *w)
{
	char q[QUOTE_MAX * 4 + 8], e[256];
	free_string(&cfg->metrics_listen, false);
	cfg->metrics_port = 0;
	cfg->metrics_public = false;
	if (*v == '\0' || strcasecmp(v, "none") == 0)
		return 0;
	size_t len = strcspn(v, " \t");
	const char *rest = v + len;
	while (is_space(*rest))
		rest++;
	bool is_public = false;
	if (strcasecmp(rest, "public") == 0)
		is_public = true;
	else if (*rest != '\0')
		return fail(w, "%s: %s after the address; only \"public\" may follow it", k->name,
			    quote(q, sizeof(q), rest, strlen(rest)));
	if (v[0] == '/') {
		if (is_public)
			return fail(w, "%s: \"public\" is for addresses, not Unix sockets", k->name);
		if (len >= 108) /* sun_path */
			return fail(w, "%s: the socket path is longer than 107 bytes", k->name);
		cfg->metrics_listen = xstrndup(v, len);
		return 0;
	}
	const char *colon = NULL;
	const char *host = v;
	size_t host_len = 0;
	if (v[0] == '[') {
		const char *close = memchr(v, ']', len);
		if (close != NULL && close + 1 < v + len && close[1] == ':') {
			host = v + 1;
			host_len = (size_t)(close - host);
			colon = close + 1;
		}
	} else {
		colon = memchr(v, ':', len);
		if (colon != NULL && memchr(colon + 1, ':', (size_t)(v + len - colon - 1)) != NULL)
			colon = NULL; /* an IPv6 address needs its brackets */
		host_len = colon ? (size_t)(colon - v) : 0;
	}
	char addr[INET6_ADDRSTRLEN + 1];
	unsigned char bin[sizeof(struct in6_addr)];
	char port_text[8];
	size_t port_len = colon ? (size_t)(v + len - colon - 1) : 0;
	int port;
	if (colon == NULL || host_len == 0 || host_len >= sizeof addr || port_len == 0 ||
	    port_len >= sizeof port_text)
		return fail(w, "%s: %s is not %s", k->name, quote(q, sizeof(q), v, len),
			    expected(k, e, sizeof(e)));
	memcpy(addr, host, host_len);
	addr[host_len] = '\0';
	memcpy(port_text, colon + 1, port_len);
	port_text[port_len] = '\0';
	if ((inet_pton(AF_INET, addr, bin) != 1 && inet_pton(AF_INET6, addr, bin) != 1) ||
	    parse_int(port_text, 1, 65535, &port) != 0)
		return fail(w, "%s: %s is not %s", k->name, quote(q, sizeof(q), v, len),
			    expected(k, e, sizeof(e)));
	if (!is_loopback(addr) && !is_public)
		return fail(w, "%s: %s is not a loopback address: the metrics would be open to "
			       "the network; write \"%.*s public\" if that is meant",
			    k->name, addr, (int)len, v);
	cfg->metrics_listen = xstrdup(addr);
	cfg->metrics_port = port;
	cfg->metrics_public = is_public;
	return 0;
}

/* AuthMechanisms: known names only, stored upper case; "none" offers no
 * SASL at all. */
static int set_mechanisms(struct config *cfg, const struct key *k, const char *v,
			  const struct where *w)
{
	size_t n = 0;
	char **list = xcalloc(strlen(v) / 2 + 2, sizeof(char *));
	char q[QUOTE_MAX * 4 + 8];
	const char *p = v;
	while (*p != '\0') {
		while (is_space(*p))
			p++;
		if (*p == '\0')
			break;
		const char *start = p;
		while (*p != '\0' && !is_space(*p))
			p++;
		char *name = xstrndup(start, (size_t)(p - start));
		for (char *c = name; *c != '\0'; c++)
			if (*c >= 'a' && *c <= 'z')
				*c = (char)(*c - 'a' + 'A');
		if (strcmp(name, "NONE") == 0 && n == 0 && *p == '\0') {
			free(name);
			break;
		}
		if (!sasl_mechanism_known(name)) {
			free(name);
			free_list(&list);
			return fail(w, "%s: %s is not a SASL mechanism tpops knows (PLAIN, LOGIN, "
				       "CRAM-MD5, SCRAM-SHA-256, or none)",
				    k->name, quote(q, sizeof(q), start, (size_t)(p - start)));
		}
		list[n++] = name;
	}
	free_list(&cfg->auth_mechanisms);
	cfg->auth_mechanisms = list;
	return 0;
}

/* The greeting and the APOP timestamp <...@host> carry the host name, so
 * it must be one printable ASCII word without angle brackets. */
static bool valid_hostname(const char *v)
{
	for (const char *p = v; *p != '\0'; p++)
		if (*p <= 0x20 || *p >= 0x7f || *p == '<' || *p == '>')
			return false;
	return true;
}

static int set_value(struct config *cfg, const struct key *k, const char *v,
		     const struct where *w)
{
	char e[128];

	/* Control characters would end up in logs, the greeting or file
	 * names; a stray CR is almost always a broken line end. */
	for (const char *p = v; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 ? *p != '\t' : *p == 0x7f)
			return fail(w, "%s: the value contains a control character", k->name);

	if (*v == '\0' && k->type != KEY_OPTIONAL && k->type != KEY_SECRET &&
	    k->type != KEY_METRICS && k->type != KEY_SOCKET)
		return fail(w, "%s: no value; expected %s", k->name, expected(k, e, sizeof(e)));

	switch (k->type) {
	case KEY_INT: {
		int n;
		if (parse_int(v, k->min, k->max, &n) != 0)
			return bad_value(w, k, v);
		*field_int(cfg, k) = n;
		return 0;
	}
	case KEY_BOOL:
		for (size_t i = 0; i < sizeof(bool_words) / sizeof(bool_words[0]); i++)
			if (strcasecmp(v, bool_words[i].word) == 0) {
				*field_bool(cfg, k) = bool_words[i].value;
				return 0;
			}
		return bad_value(w, k, v);
	case KEY_ENUM:
		for (const struct enum_name *e2 = k->names; e2->name != NULL; e2++)
			if (strcasecmp(v, e2->name) == 0) {
				*field_int(cfg, k) = e2->value;
				return 0;
			}
		return bad_value(w, k, v);
	case KEY_LISTEN:
		return set_listen(cfg, k, v, w);
	case KEY_MECHS:
		return set_mechanisms(cfg, k, v, w);
	case KEY_METRICS:
		return set_metrics(cfg, k, v, w);
	case KEY_SOCKET:
		free_string(field_str(cfg, k), false);
		if (*v == '\0' || strcasecmp(v, "none") == 0)
			return 0;
		if (v[0] != '/' || strlen(v) > 107) /* sun_path holds 108 with the NUL */
			return bad_value(w, k, v);
		*field_str(cfg, k) = xstrdup(v);
		return 0;
	case KEY_HOSTNAME:
		if (!valid_hostname(v))
			return bad_value(w, k, v);
		break;
	case KEY_STRING:
	case KEY_OPTIONAL:
	case KEY_SECRET:
		break;
	}

	/* A key given twice: the later one wins. */
	char **f = field_str(cfg, k);
	free_string(f, k->type == KEY_SECRET);
	if (k->type == KEY_OPTIONAL && *v == '\0')
		return 0; /* "none" */
	*f = xstrdup(v);
	return 0;
}

static const struct key *find_key(const char *name, size_t len)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strlen(keys[i].name) == len && strncasecmp(keys[i].name, name, len) == 0)
			return &keys[i];
	return NULL;
}

/* Cuts the value of a line (already trimmed) out of its quotes or its
 * trailing comment, in place. A quoted value runs to the last double quote
 * on the line, so a password may hold quotes and '#'; after it only a
 * comment may follow. Unquoted, " #" or "\t#" starts a comment, but a '#'
 * that is the first character or inside a word is part of the value. */
static int unquote(char **vp, const struct key *k, const struct where *w)
{
	char *v = *vp;
	size_t len = strlen(v);

	if (v[0] == '"') {
		char *close = strrchr(v + 1, '"');
		if (close == NULL)
			return fail(w, "%s: no closing quote", k->name);
		char *rest = close + 1;
		while (is_space(*rest))
			rest++;
		if (*rest != '\0' && *rest != '#')
			return fail(w, "%s: text after the closing quote", k->name);
		*close = '\0';
		*vp = v + 1;
		return 0;
	}
	for (size_t i = 1; i < len; i++)
		if (v[i] == '#' && is_space(v[i - 1])) {
			v[i] = '\0';
			len = i;
			break;
		}
	while (len > 0 && is_space(v[len - 1]))
		v[--len] = '\0';
	return 0;
}

/* One line without its line end, NUL-terminated, in a writable buffer. */
static int parse_line(struct config *cfg, char *line, const struct where *w)
{
	char *p = line;
	while (is_space(*p))
		p++;
	if (*p == '\0' || *p == '#')
		return 0;

	char *sep = p + strcspn(p, ":=");
	if (*sep == '\0') {
		char q[QUOTE_MAX * 4 + 8];
		/* Only the first word: the rest may be a password. */
		size_t word = strcspn(p, " \t");
		return fail(w, "no ':' or '=' after %s; expected \"Key: value\"",
			    quote(q, sizeof(q), p, word));
	}
	char *end = sep;
	while (end > p && is_space(end[-1]))
		end--;
	if (end == p)
		return fail(w, "no key before '%c'; expected \"Key: value\"", *sep);
	const struct key *k = find_key(p, (size_t)(end - p));
	if (k == NULL) {
		char q[QUOTE_MAX * 4 + 8];
		return fail(w, "unknown key %s", quote(q, sizeof(q), p, (size_t)(end - p)));
	}

	char *v = sep + 1;
	while (is_space(*v))
		v++;
	if (unquote(&v, k, w) != 0)
		return -1;
	return set_value(cfg, k, v, w);
}

int config_parse(struct config *cfg, const char *name, const char *text, size_t len,
		 char *err, size_t errlen)
{
	struct where w = {name != NULL ? name : "(config)", 0, err, errlen};
	char line[CONFIG_MAX_LINE + 1];
	size_t pos = 0;
	int rc = 0;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (name != NULL) {
		free(cfg->path);
		cfg->path = xstrdup(name);
	}
	/* Editors on some systems start a UTF-8 file with a byte order mark. */
	if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
		pos = 3;

	while (pos < len && rc == 0) {
		const char *start = text + pos;
		const char *nl = memchr(start, '\n', len - pos);
		size_t n = nl != NULL ? (size_t)(nl - start) : len - pos;
		pos += n + (nl != NULL);
		w.line++;
		if (n > 0 && start[n - 1] == '\r')
			n--;
		if (n > CONFIG_MAX_LINE)
			rc = fail(&w, "the line is longer than %d bytes", CONFIG_MAX_LINE);
		else if (memchr(start, '\0', n) != NULL)
			rc = fail(&w, "the line holds a NUL byte");
		else {
			memcpy(line, start, n);
			line[n] = '\0';
			rc = parse_line(cfg, line, &w);
		}
	}
	/* The line may have held the MySQL password. */
	wipe(line, sizeof(line));
	return rc;
}

int config_load(struct config *cfg, const char *path, char *err, size_t errlen)
{
	config_defaults(cfg);
	if (err != NULL && errlen > 0)
		err[0] = '\0';

	FILE *f = fopen(path, "re");
	if (f == NULL) {
		if (err != NULL)
			str_format(err, errlen, "%s: cannot read: %s", path, strerror(errno));
		return -1;
	}
	/* One byte more than the limit tells a file at the limit from a
	 * bigger one. */
	char *text = xmalloc(CONFIG_MAX_SIZE + 1);
	size_t len = 0;
	int rc = 0;
	for (;;) {
		size_t got = fread(text + len, 1, CONFIG_MAX_SIZE + 1 - len, f);
		len += got;
		if (got == 0 || len > CONFIG_MAX_SIZE)
			break;
	}
	if (ferror(f)) {
		int e = errno;
		if (err != NULL)
			str_format(err, errlen, "%s: cannot read: %s", path, strerror(e));
		rc = -1;
	} else if (len > CONFIG_MAX_SIZE) {
		if (err != NULL)
			str_format(err, errlen, "%s: cannot read: larger than %d bytes", path,
				   CONFIG_MAX_SIZE);
		rc = -1;
	}
	fclose(f);
	if (rc == 0)
		rc = config_parse(cfg, path, text, len, err, errlen);
	else {
		free(cfg->path);
		cfg->path = xstrdup(path);
	}
	/* The file text holds the MySQL password. */
	free_secret(text, len);
	return rc;
}

struct config *config_new(const char *path, char *err, size_t errlen)
{
	struct config *cfg = xcalloc(1, sizeof *cfg);
	if (config_load(cfg, path, err, errlen) != 0) {
		config_free(cfg);
		free(cfg);
		return NULL;
	}
	cfg->refs = 1;
	return cfg;
}

const struct config *config_hold(const struct config *cfg)
{
	__atomic_add_fetch(&((struct config *)cfg)->refs, 1, __ATOMIC_RELAXED);
	return cfg;
}

void config_release(const struct config *cfg)
{
	if (cfg == NULL)
		return;
	struct config *c = (struct config *)cfg;
	if (__atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) == 0) {
		config_free(c);
		free(c);
	}
}
