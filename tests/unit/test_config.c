/* Unit tests of the tpops.conf parser (src/config.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "tpops_limits.h"

/* Each test gets a fresh struct with the defaults and frees it after, so
 * ASan sees every leak. */
struct fixture {
	struct config cfg;
	char err[512];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (f == NULL)
		return -1;
	config_defaults(&f->cfg);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	config_free(&f->cfg);
	free(f);
	return 0;
}

static int parse(struct fixture *f, const char *text)
{
	return config_parse(&f->cfg, "tpops.conf", text, strlen(text), f->err, sizeof(f->err));
}

/* Parses text that must fail, and checks the whole message. */
static void parse_fails(struct fixture *f, const char *text, const char *msg)
{
	int rc = parse(f, text);
	if (rc != -1 || strcmp(f->err, msg) != 0)
		print_error("input:    %s\nexpected: %s\ngot (%d): %s\n", text, msg, rc, f->err);
	assert_int_equal(rc, -1);
	assert_string_equal(f->err, msg);
}

static void parse_ok(struct fixture *f, const char *text)
{
	int rc = parse(f, text);
	if (rc != 0)
		print_error("input: %s\nerror: %s\n", text, f->err);
	assert_int_equal(rc, 0);
	assert_string_equal(f->err, "");
}

static void test_defaults(void **state)
{
	struct config *c = &((struct fixture *)*state)->cfg;
	char host[256] = "";
	gethostname(host, sizeof(host) - 1);

	assert_null(c->path);
	assert_int_equal(c->port, DEFAULT_PORT);
	assert_non_null(c->hostname);
	if (host[0] != '\0')
		assert_string_equal(c->hostname, host);
	assert_int_equal(c->connection_keep_time, 3600);
	assert_int_equal(c->command_timeout, 600);
	assert_int_equal(c->mailbox, MAILBOX_SQL);
	assert_null(c->mysql_server);
	assert_null(c->mysql_user);
	assert_null(c->mysql_pass);
	assert_null(c->mysql_db);
	assert_int_equal(c->database, DATABASE_SQLITE);
	assert_string_equal(c->sqlite_path, DEFAULT_SQLITE_PATH);
	assert_int_equal(c->mysql_port, 3306);
	assert_null(c->mysql_socket);
	assert_int_equal(c->mysql_failback_time, 300);
	assert_non_null(c->listen);
	assert_string_equal(c->listen[0], "0.0.0.0");
	assert_string_equal(c->listen[1], "::");
	assert_null(c->listen[2]);
	assert_int_equal(c->tls_port, -1);
	assert_null(c->tls_cert);
	assert_null(c->tls_key);
	assert_false(c->require_tls);
	assert_null(c->maildir_root);
	assert_string_equal(c->user, DEFAULT_RUN_USER);
	assert_string_equal(c->group, DEFAULT_RUN_GROUP);
	assert_int_equal(c->max_connections, 10000);
	assert_int_equal(c->max_connections_per_ip, 50);
	assert_int_equal(c->auth_failure_delay, 2);
	assert_int_equal(c->lock_lease, 60);
	assert_int_equal(c->log, LOG_TO_SYSLOG);
	assert_int_equal(c->log_level, LOGLEVEL_INFO);
	assert_null(c->pid_file);
	assert_false(c->foreground);
	assert_int_equal(c->io_threads, 0);
	assert_int_equal(c->workers, 0);
}

static void test_empty_text(void **state)
{
	struct fixture *f = *state;
	parse_ok(f, "");
	parse_ok(f, "\n\n   \n\t\n# only comments\n   # indented\n");
	assert_int_equal(f->cfg.port, DEFAULT_PORT);
	assert_string_equal(f->cfg.path, "tpops.conf");
}

static void test_every_key(void **state)
{
	struct fixture *f = *state;
	parse_ok(f, "Port: 1110\n"
		    "Hostname: mail.example.org\n"
		    "ConnectionKeepTime: 120\n"
		    "CommandTimeout: 30\n"
		    "Mailbox: Maildir\n"
		    "MySQL_Server: db.example.org\n"
		    "MySQL_User: tpops\n"
		    "MySQL_Pass: s3cret\n"
		    "MySQL_DB: mail\n"
		    "Database: mysql\n"
		    "SQLite_Path: /tmp/t.db\n"
		    "MySQL_Port: 3307\n"
		    "MySQL_Socket: /run/mysqld/mysqld.sock\n"
		    "Listen: 127.0.0.1 [::1] 192.0.2.1\n"
		    "TLS_Port: 1995\n"
		    "TLS_Cert: /etc/tpops/cert.pem\n"
		    "TLS_Key: /etc/tpops/key.pem\n"
		    "RequireTLS: yes\n"
		    "MaildirRoot: /var/mail/vhosts\n"
		    "User: mailuser\n"
		    "Group: mailgroup\n"
		    "MaxConnections: 500\n"
		    "MaxConnectionsPerIP: 5\n"
		    "AuthFailureDelay: 0\n"
		    "LockLease: 300\n"
		    "MySQL_FailbackTime: 0\n"
		    "Log: stderr\n"
		    "LogLevel: debug\n"
		    "PidFile: /run/tpops.pid\n"
		    "Foreground: on\n"
		    "IOThreads: 4\n"
		    "Workers: 16\n");
	struct config *c = &f->cfg;
	assert_int_equal(c->port, 1110);
	assert_string_equal(c->hostname, "mail.example.org");
	assert_int_equal(c->connection_keep_time, 120);
	assert_int_equal(c->command_timeout, 30);
	assert_int_equal(c->mailbox, MAILBOX_MAILDIR);
	assert_string_equal(c->mysql_server, "db.example.org");
	assert_string_equal(c->mysql_user, "tpops");
	assert_string_equal(c->mysql_pass, "s3cret");
	assert_string_equal(c->mysql_db, "mail");
	assert_int_equal(c->database, DATABASE_MYSQL);
	assert_string_equal(c->sqlite_path, "/tmp/t.db");
	assert_int_equal(c->mysql_port, 3307);
	assert_string_equal(c->mysql_socket, "/run/mysqld/mysqld.sock");
	assert_int_equal(c->mysql_failback_time, 0);
	assert_string_equal(c->listen[0], "127.0.0.1");
	assert_string_equal(c->listen[1], "::1");
	assert_string_equal(c->listen[2], "192.0.2.1");
	assert_null(c->listen[3]);
	assert_int_equal(c->tls_port, 1995);
	assert_string_equal(c->tls_cert, "/etc/tpops/cert.pem");
	assert_string_equal(c->tls_key, "/etc/tpops/key.pem");
	assert_true(c->require_tls);
	assert_string_equal(c->maildir_root, "/var/mail/vhosts");
	assert_string_equal(c->user, "mailuser");
	assert_string_equal(c->group, "mailgroup");
	assert_int_equal(c->max_connections, 500);
	assert_int_equal(c->max_connections_per_ip, 5);
	assert_int_equal(c->auth_failure_delay, 0);
	assert_int_equal(c->lock_lease, 300);
	assert_int_equal(c->log, LOG_TO_STDERR);
	assert_int_equal(c->log_level, LOGLEVEL_DEBUG);
	assert_string_equal(c->pid_file, "/run/tpops.pid");
	assert_true(c->foreground);
	assert_int_equal(c->io_threads, 4);
	assert_int_equal(c->workers, 16);
}

/* The seed's own tpops.conf layout: tabs after the colon, quoted Mailbox. */
static void test_seed_style(void **state)
{
	struct fixture *f = *state;
	parse_ok(f, "Port:\t\t110\n"
		    "Hostname:\t\tpop.example.jp\n"
		    "ConnectionKeepTime:\t3600\n"
		    "CommandTimeout:\t600\n"
		    "Mailbox:\t\t\"MySQL\"\n"
		    "\n"
		    "MySQL_Server:\tlocalhost\n"
		    "MySQL_User:\t\ttpops\n"
		    "MySQL_Pass:\t\t\"pass word\"\n"
		    "MySQL_DB:\t\ttpops\n");
	assert_int_equal(f->cfg.mailbox, MAILBOX_SQL);
	assert_string_equal(f->cfg.hostname, "pop.example.jp");
	assert_string_equal(f->cfg.mysql_pass, "pass word");
	parse_ok(f, "Mailbox: Database\n");
	assert_int_equal(f->cfg.mailbox, MAILBOX_SQL);
}

static void test_equals_separator(void **state)
{
	struct fixture *f = *state;
	parse_ok(f, "Port = 2110\nHostname=h.example\nListen = ::1\nMySQL_Pass = a:b=c\n");
	assert_int_equal(f->cfg.port, 2110);
	assert_string_equal(f->cfg.hostname, "h.example");
	assert_string_equal(f->cfg.listen[0], "::1");
	assert_null(f->cfg.listen[1]);
	/* the first separator splits; the rest belongs to the value */
	assert_string_equal(f->cfg.mysql_pass, "a:b=c");
	parse_ok(f, "Listen: :: 127.0.0.1\n");
	assert_string_equal(f->cfg.listen[0], "::");
	parse_ok(f, "MySQL_Server :  db\n");
	assert_string_equal(f->cfg.mysql_server, "db");
}

static void test_case_insensitive(void **state)
{
	struct fixture *f = *state;
	parse_ok(f, "PORT: 7\nhostname: x\nmysql_pass: p\nmAiLbOx: MAILDIR\n"
		    "database: SQLite\nlog: STDERR\nloglevel: Error\nrequiretls: TRUE\n"
		    "FOREGROUND: Yes\n");
	assert_int_equal(f->cfg.port, 7);
	assert_string_equal(f->cfg.hostname, "x");
	assert_string_equal(f->cfg.mysql_pass, "p");
	assert_int_equal(f->cfg.mailbox, MAILBOX_MAILDIR);
	assert_int_equal(f->cfg.database, DATABASE_SQLITE);
	assert_int_equal(f->cfg.log, LOG_TO_STDERR);
	assert_int_equal(f->cfg.log_level, LOGLEVEL_ERROR);
	assert_true(f->cfg.require_tls);
	assert_true(f->cfg.foreground);
	/* values of string keys keep their case */
	parse_ok(f, "MySQL_User: MixedCase\n");
	assert_string_equal(f->cfg.mysql_user, "MixedCase");
}

static void test_bools(void **state)
{
	struct fixture *f = *state;
	static const struct {
		const char *word;
		bool value;
	} cases[] = {
		{"yes", true}, {"no", false}, {"true", true}, {"false", false},
		{"on", true},  {"off", false}, {"1", true},   {"0", false},
		{"YES", true}, {"Off", false},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char text[64];
		snprintf(text, sizeof(text), "RequireTLS: %s\nForeground: %s\n", cases[i].word,
			 cases[i].word);
		parse_ok(f, text);
		assert_int_equal(f->cfg.require_tls, cases[i].value);
		assert_int_equal(f->cfg.foreground, cases[i].value);
	}
}

static void test_quotes(void **state)
{
	struct fixture *f = *state;
	parse_ok(f, "Port: \"995\"\n");
	assert_int_equal(f->cfg.port, 995);
	parse_ok(f, "Hostname: \"q.example\"\n");
	assert_string_equal(f->cfg.hostname, "q.example");
	/* inside quotes '#' and surrounding spaces are part of the value */
	parse_ok(f, "MySQL_Pass: \"  a # b  \"\n");
	assert_string_equal(f->cfg.mysql_pass, "  a # b  ");
	/* a quoted value runs to the last quote */
	parse_ok(f, "MySQL_Pass: \"say \"hi\"\"\n");
	assert_string_equal(f->cfg.mysql_pass, "say \"hi\"");
	/* a comment may follow the closing quote */
	parse_ok(f, "MySQL_Pass: \"x#y\"   # the password\n");
	assert_string_equal(f->cfg.mysql_pass, "x#y");
	parse_ok(f, "MySQL_Pass: \"x\"# tight comment\n");
	assert_string_equal(f->cfg.mysql_pass, "x");
	/* an empty quoted value */
	parse_ok(f, "MySQL_Pass: \"\"\n");
	assert_string_equal(f->cfg.mysql_pass, "");
	/* a quote inside an unquoted value is kept */
	parse_ok(f, "MySQL_User: o\"brien\"\n");
	assert_string_equal(f->cfg.mysql_user, "o\"brien\"");
	parse_ok(f, "Listen: \"127.0.0.1 ::1\"\n");
	assert_string_equal(f->cfg.listen[1], "::1");
}

static void test_quote_errors(void **state)
{
	struct fixture *f = *state;
	parse_fails(f, "Hostname: \"abc\n", "tpops.conf:1: Hostname: no closing quote");
	parse_fails(f, "Hostname: \"\n", "tpops.conf:1: Hostname: no closing quote");
	parse_fails(f, "\n\nMySQL_Pass: \"abc\" def\n",
		    "tpops.conf:3: MySQL_Pass: text after the closing quote");
	parse_fails(f, "Hostname: \"\"\n",
		    "tpops.conf:1: Hostname: no value; expected a host name");
}

static void test_comments(void **state)
{
	struct fixture *f = *state;
	parse_ok(f, "# a comment\n"
		    "   # an indented comment\n"
		    "Port: 111 # trailing comment\n"
		    "Hostname: h\t# after a tab\n"
		    "MySQL_Pass: pa#ss\n"
		    "MySQL_User: #user\n"
		    "MySQL_DB: db #\n"
		    "#Port: 999\n");
	assert_int_equal(f->cfg.port, 111);
	assert_string_equal(f->cfg.hostname, "h");
	/* '#' inside a word, or as the first character, is not a comment */
	assert_string_equal(f->cfg.mysql_pass, "pa#ss");
	assert_string_equal(f->cfg.mysql_user, "#user");
	assert_string_equal(f->cfg.mysql_db, "db");
}

static void test_whitespace(void **state)
{
	struct fixture *f = *state;
	parse_ok(f, "  \t Port \t:\t 112 \t \n MySQL_User:  a b  \n");
	assert_int_equal(f->cfg.port, 112);
	assert_string_equal(f->cfg.mysql_user, "a b");
}

static void test_crlf(void **state)
{
	struct fixture *f = *state;
	parse_ok(f, "Port: 113\r\nHostname: crlf.example\r\n\r\n# c\r\nMySQL_Pass: \"p\"\r\n"
		    "Listen: ::1\r\n");
	assert_int_equal(f->cfg.port, 113);
	assert_string_equal(f->cfg.hostname, "crlf.example");
	assert_string_equal(f->cfg.mysql_pass, "p");
	assert_string_equal(f->cfg.listen[0], "::1");
	/* line numbers count CRLF lines */
	parse_fails(f, "Port: 1\r\n\r\nPort: x\r\n",
		    "tpops.conf:3: Port: \"x\" is not a number from 1 to 65535");
	/* a CR that is not part of a line end is a control character */
	parse_fails(f, "Hostname: a\rb\n",
		    "tpops.conf:1: Hostname: the value contains a control character");
}

static void test_no_final_newline(void **state)
{
	struct fixture *f = *state;
	parse_ok(f, "Port: 1\nPort: 114");
	assert_int_equal(f->cfg.port, 114);
}

static void test_utf8_bom(void **state)
{
	struct fixture *f = *state;
	parse_ok(f, "\xef\xbb\xbfPort: 115\n");
	assert_int_equal(f->cfg.port, 115);
}

static void test_duplicate_keys(void **state)
{
	struct fixture *f = *state;
	parse_ok(f, "Port: 1\nport: 2\nHostname: a\nHostname: b\nMySQL_Pass: x\nMySQL_Pass: y\n"
		    "Listen: ::1\nListen: 127.0.0.1 ::\nTLS_Cert: /a\nTLS_Cert: /b\n");
	assert_int_equal(f->cfg.port, 2);
	assert_string_equal(f->cfg.hostname, "b");
	assert_string_equal(f->cfg.mysql_pass, "y");
	assert_string_equal(f->cfg.listen[0], "127.0.0.1");
	assert_string_equal(f->cfg.listen[1], "::");
	assert_null(f->cfg.listen[2]);
	assert_string_equal(f->cfg.tls_cert, "/b");
	/* parsing again on top keeps what the new text does not set */
	parse_ok(f, "Port: 3\n");
	assert_int_equal(f->cfg.port, 3);
	assert_string_equal(f->cfg.hostname, "b");
}

static void test_optional_and_empty(void **state)
{
	struct fixture *f = *state;
	/* an empty optional string means "none" and clears an earlier one */
	parse_ok(f, "PidFile: /run/x.pid\nPidFile:\nMySQL_Socket: \"\"\nTLS_Cert:   \n");
	assert_null(f->cfg.pid_file);
	assert_null(f->cfg.mysql_socket);
	assert_null(f->cfg.tls_cert);
	/* an empty password is a password */
	parse_ok(f, "MySQL_Pass:\n");
	assert_non_null(f->cfg.mysql_pass);
	assert_string_equal(f->cfg.mysql_pass, "");
}

static void test_empty_values(void **state)
{
	struct fixture *f = *state;
	parse_fails(f, "Port:\n", "tpops.conf:1: Port: no value; expected a number from 1 to 65535");
	parse_fails(f, "Port: # none\n",
		    "tpops.conf:1: Port: \"# none\" is not a number from 1 to 65535");
	parse_fails(f, "CommandTimeout: \"\"\n",
		    "tpops.conf:1: CommandTimeout: no value; expected a number of at least 1");
	parse_fails(f, "Mailbox:\n",
		    "tpops.conf:1: Mailbox: no value; expected one of MySQL, Database, Maildir");
	parse_fails(f, "Database: \n",
		    "tpops.conf:1: Database: no value; expected sqlite or mysql");
	parse_fails(f, "RequireTLS:\n", "tpops.conf:1: RequireTLS: no value; expected yes or no");
	parse_fails(f, "Hostname:\n", "tpops.conf:1: Hostname: no value; expected a host name");
	parse_fails(f, "User=\n", "tpops.conf:1: User: no value; expected a user name");
	parse_fails(f, "SQLite_Path:\n",
		    "tpops.conf:1: SQLite_Path: no value; expected a file name");
	parse_fails(f, "Listen:\n",
		    "tpops.conf:1: Listen: no value; expected IPv4 or IPv6 addresses separated by "
		    "spaces");
	parse_fails(f, "Listen: \t \n",
		    "tpops.conf:1: Listen: no value; expected IPv4 or IPv6 addresses separated by "
		    "spaces");
}

/* MetricsListen: loopback or a socket; a public address only when said. */
static void test_metrics_listen(void **state)
{
	struct fixture *f = *state;
	assert_null(f->cfg.metrics_listen);
	assert_string_equal(f->cfg.control_socket, "/run/tpops/control");
	parse_ok(f, "MetricsListen: 127.0.0.1:9110\n");
	assert_string_equal(f->cfg.metrics_listen, "127.0.0.1");
	assert_int_equal(f->cfg.metrics_port, 9110);
	assert_false(f->cfg.metrics_public);
	parse_ok(f, "MetricsListen: [::1]:9111\n");
	assert_string_equal(f->cfg.metrics_listen, "::1");
	assert_int_equal(f->cfg.metrics_port, 9111);
	parse_ok(f, "MetricsListen: /run/tpops/metrics\n");
	assert_string_equal(f->cfg.metrics_listen, "/run/tpops/metrics");
	parse_ok(f, "MetricsListen: 192.0.2.7:9110 public\n");
	assert_string_equal(f->cfg.metrics_listen, "192.0.2.7");
	assert_true(f->cfg.metrics_public);
	parse_ok(f, "MetricsListen: none\n");
	assert_null(f->cfg.metrics_listen);
	parse_fails(f, "MetricsListen: 0.0.0.0:9110\n",
		    "tpops.conf:1: MetricsListen: 0.0.0.0 is not a loopback address: the metrics "
		    "would be open to the network; write \"0.0.0.0:9110 public\" if that is meant");
	parse_fails(f, "MetricsListen: [2001:db8::1]:9110\n",
		    "tpops.conf:1: MetricsListen: 2001:db8::1 is not a loopback address: the "
		    "metrics would be open to the network; write \"[2001:db8::1]:9110 public\" if "
		    "that is meant");
	parse_fails(f, "MetricsListen: localhost:9110\n",
		    "tpops.conf:1: MetricsListen: \"localhost:9110\" is not ADDRESS:PORT ([::1]:PORT "
		    "for IPv6), followed by \"public\" when the address is not loopback, or the "
		    "absolute path of a Unix socket");
	parse_fails(f, "MetricsListen: 127.0.0.1\n",
		    "tpops.conf:1: MetricsListen: \"127.0.0.1\" is not ADDRESS:PORT ([::1]:PORT for "
		    "IPv6), followed by \"public\" when the address is not loopback, or the "
		    "absolute path of a Unix socket");
	parse_fails(f, "MetricsListen: 127.0.0.1:70000\n",
		    "tpops.conf:1: MetricsListen: \"127.0.0.1:70000\" is not ADDRESS:PORT ([::1]:PORT "
		    "for IPv6), followed by \"public\" when the address is not loopback, or the "
		    "absolute path of a Unix socket");
	parse_fails(f, "MetricsListen: 127.0.0.1:9110 open\n",
		    "tpops.conf:1: MetricsListen: \"open\" after the address; only \"public\" may "
		    "follow it");
	parse_fails(f, "MetricsListen: /run/m public\n",
		    "tpops.conf:1: MetricsListen: \"public\" is for addresses, not Unix sockets");
	parse_ok(f, "ControlSocket: none\n");
	assert_null(f->cfg.control_socket);
	parse_ok(f, "ControlSocket: /tmp/x/control\n");
	assert_string_equal(f->cfg.control_socket, "/tmp/x/control");
	parse_fails(f, "ControlSocket: run/control\n",
		    "tpops.conf:1: ControlSocket: \"run/control\" is not an absolute path of at "
		    "most 107 bytes, or none");
}

static void test_unknown_key(void **state)
{
	struct fixture *f = *state;
	parse_fails(f, "Port: 1\n# c\nProt: 110\n", "tpops.conf:3: unknown key \"Prot\"");
	parse_fails(f, "Max Connections: 1\n", "tpops.conf:1: unknown key \"Max Connections\"");
	parse_fails(f, "Po\x01rt: 1\n", "tpops.conf:1: unknown key \"Po\\x01rt\"");
	/* a prefix of a key is not the key */
	parse_fails(f, "Por: 1\n", "tpops.conf:1: unknown key \"Por\"");
	parse_fails(f, "MaxConnectionsPerIPs: 1\n",
		    "tpops.conf:1: unknown key \"MaxConnectionsPerIPs\"");
}

static void test_missing_separator(void **state)
{
	struct fixture *f = *state;
	parse_fails(f, "\nPort 110\n",
		    "tpops.conf:2: no ':' or '=' after \"Port\"; expected \"Key: value\"");
	/* the rest of the line may be a password: it is not echoed */
	parse_fails(f, "MySQL_Pass hunter2\n",
		    "tpops.conf:1: no ':' or '=' after \"MySQL_Pass\"; expected \"Key: value\"");
	assert_null(strstr(f->err, "hunter2"));
	parse_fails(f, ": 1\n", "tpops.conf:1: no key before ':'; expected \"Key: value\"");
	parse_fails(f, "  = 1\n", "tpops.conf:1: no key before '='; expected \"Key: value\"");
}

static void test_bad_numbers(void **state)
{
	struct fixture *f = *state;
	parse_fails(f, "Port: abc\n", "tpops.conf:1: Port: \"abc\" is not a number from 1 to 65535");
	parse_fails(f, "Port: 0\n", "tpops.conf:1: Port: \"0\" is not a number from 1 to 65535");
	parse_fails(f, "Port: 65536\n",
		    "tpops.conf:1: Port: \"65536\" is not a number from 1 to 65535");
	parse_fails(f, "Port: -1\n", "tpops.conf:1: Port: \"-1\" is not a number from 1 to 65535");
	parse_fails(f, "Port: +110\n",
		    "tpops.conf:1: Port: \"+110\" is not a number from 1 to 65535");
	parse_fails(f, "Port: 0x6e\n",
		    "tpops.conf:1: Port: \"0x6e\" is not a number from 1 to 65535");
	parse_fails(f, "Port: 1 10\n",
		    "tpops.conf:1: Port: \"1 10\" is not a number from 1 to 65535");
	parse_fails(f, "Port: 110abc\n",
		    "tpops.conf:1: Port: \"110abc\" is not a number from 1 to 65535");
	parse_fails(f, "Port: 99999999999999999999999999\n",
		    "tpops.conf:1: Port: \"99999999999999999999999999\" is not a number from 1 to "
		    "65535");
	parse_fails(f, "MaxConnections: 2147483648\n",
		    "tpops.conf:1: MaxConnections: \"2147483648\" is not a number of at least 1");
	parse_fails(f, "MaxConnections: 0\n",
		    "tpops.conf:1: MaxConnections: \"0\" is not a number of at least 1");
	parse_fails(f, "ConnectionKeepTime: 0\n",
		    "tpops.conf:1: ConnectionKeepTime: \"0\" is not a number of at least 1");
	parse_fails(f, "MaxConnectionsPerIP: 0\n",
		    "tpops.conf:1: MaxConnectionsPerIP: \"0\" is not a number of at least 1");
	parse_fails(f, "AuthFailureDelay: 61\n",
		    "tpops.conf:1: AuthFailureDelay: \"61\" is not a number from 0 to 60");
	parse_fails(f, "LockLease: 4\n",
		    "tpops.conf:1: LockLease: \"4\" is not a number from 5 to 86400");
	parse_fails(f, "LockLease: 86401\n",
		    "tpops.conf:1: LockLease: \"86401\" is not a number from 5 to 86400");
	parse_fails(f, "MySQL_FailbackTime: -1\n",
		    "tpops.conf:1: MySQL_FailbackTime: \"-1\" is not a number from 0 to 86400");
	parse_fails(f, "MySQL_Port: 0\n",
		    "tpops.conf:1: MySQL_Port: \"0\" is not a number from 1 to 65535");
	parse_fails(f, "TLS_Port: -1\n",
		    "tpops.conf:1: TLS_Port: \"-1\" is not a number from 0 to 65535");
	parse_fails(f, "IOThreads: 65\n",
		    "tpops.conf:1: IOThreads: \"65\" is not a number from 0 to 64");
	parse_fails(f, "Workers: 257\n",
		    "tpops.conf:1: Workers: \"257\" is not a number from 0 to 256");
	/* long junk is cut in the message */
	char text[200];
	snprintf(text, sizeof(text), "Port: %0100d\n", 0);
	parse_fails(f, text,
		    "tpops.conf:1: Port: "
		    "\"0000000000000000000000000000000000000000000000000000000000000000\"... is not "
		    "a number from 1 to 65535");
}

static void test_number_bounds(void **state)
{
	struct fixture *f = *state;
	parse_ok(f, "Port: 65535\nMySQL_Port: 1\nTLS_Port: 0\nAuthFailureDelay: 60\n"
		    "LockLease: 5\nIOThreads: 64\nWorkers: 256\nMaxConnections: 2147483647\n"
		    "CommandTimeout: 0001\n");
	assert_int_equal(f->cfg.port, 65535);
	assert_int_equal(f->cfg.mysql_port, 1);
	assert_int_equal(f->cfg.tls_port, 0);
	assert_int_equal(f->cfg.auth_failure_delay, 60);
	assert_int_equal(f->cfg.lock_lease, 5);
	assert_int_equal(f->cfg.io_threads, 64);
	assert_int_equal(f->cfg.workers, 256);
	assert_int_equal(f->cfg.max_connections, 2147483647);
	assert_int_equal(f->cfg.command_timeout, 1);
	parse_ok(f, "LockLease: 86400\nTLS_Port: 65535\n");
	assert_int_equal(f->cfg.lock_lease, 86400);
	assert_int_equal(f->cfg.tls_port, 65535);
}

static void test_bad_enums_and_bools(void **state)
{
	struct fixture *f = *state;
	parse_fails(f, "Mailbox: mbox\n",
		    "tpops.conf:1: Mailbox: \"mbox\" is not one of MySQL, Database, Maildir");
	parse_fails(f, "Database: postgres\n",
		    "tpops.conf:1: Database: \"postgres\" is not sqlite or mysql");
	parse_fails(f, "Log: file\n", "tpops.conf:1: Log: \"file\" is not syslog or stderr");
	parse_fails(f, "LogLevel: warn\n",
		    "tpops.conf:1: LogLevel: \"warn\" is not one of error, info, debug");
	parse_fails(f, "RequireTLS: maybe\n", "tpops.conf:1: RequireTLS: \"maybe\" is not yes or no");
	parse_fails(f, "Foreground: 2\n", "tpops.conf:1: Foreground: \"2\" is not yes or no");
	parse_fails(f, "Foreground: yess\n", "tpops.conf:1: Foreground: \"yess\" is not yes or no");
}

static void test_bad_addresses(void **state)
{
	struct fixture *f = *state;
	parse_fails(f, "Listen: 1.2.3\n",
		    "tpops.conf:1: Listen: \"1.2.3\" is not an IPv4 or IPv6 address");
	parse_fails(f, "Listen: ::1 localhost\n",
		    "tpops.conf:1: Listen: \"localhost\" is not an IPv4 or IPv6 address");
	parse_fails(f, "Listen: 256.0.0.1\n",
		    "tpops.conf:1: Listen: \"256.0.0.1\" is not an IPv4 or IPv6 address");
	parse_fails(f, "Listen: [::1\n",
		    "tpops.conf:1: Listen: \"[::1\" is not an IPv4 or IPv6 address");
	parse_fails(f, "Listen: []\n", "tpops.conf:1: Listen: \"[]\" is not an IPv4 or IPv6 address");
	parse_fails(f, "Listen: 127.0.0.1,::1\n",
		    "tpops.conf:1: Listen: \"127.0.0.1,::1\" is not an IPv4 or IPv6 address");
	parse_fails(f, "Listen: ::1 [0:0:0:0:0:0:0:1]\n",
		    "tpops.conf:1: Listen: \"[0:0:0:0:0:0:0:1]\" is given twice");
	parse_fails(f,
		    "Listen: 0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000\n",
		    "tpops.conf:1: Listen: "
		    "\"0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000\" is not an "
		    "IPv4 or IPv6 address");
	/* a failed Listen leaves the earlier list alone */
	assert_string_equal(f->cfg.listen[0], "0.0.0.0");
	assert_string_equal(f->cfg.listen[1], "::");
	assert_null(f->cfg.listen[2]);
}

static void test_many_addresses(void **state)
{
	struct fixture *f = *state;
	parse_ok(f, "Listen: 10.0.0.1 10.0.0.2 10.0.0.3 10.0.0.4 10.0.0.5 [fe80::1] ::ffff:10.0.0.1 "
		    "10.0.0.6 10.0.0.7 10.0.0.8\n");
	size_t n = 0;
	while (f->cfg.listen[n] != NULL)
		n++;
	assert_int_equal(n, 10);
	assert_string_equal(f->cfg.listen[5], "fe80::1");
	assert_string_equal(f->cfg.listen[6], "::ffff:10.0.0.1");
	assert_string_equal(f->cfg.listen[9], "10.0.0.8");
}

static void test_bad_hostname(void **state)
{
	struct fixture *f = *state;
	parse_fails(f, "Hostname: a b\n", "tpops.conf:1: Hostname: \"a b\" is not a host name");
	parse_fails(f, "Hostname: <x>\n", "tpops.conf:1: Hostname: \"<x>\" is not a host name");
	parse_fails(f, "Hostname: h\xc3\xa9\n",
		    "tpops.conf:1: Hostname: \"h\\xc3\\xa9\" is not a host name");
}

static void test_control_characters(void **state)
{
	struct fixture *f = *state;
	parse_fails(f, "MySQL_Pass: a\x1b[0mb\n",
		    "tpops.conf:1: MySQL_Pass: the value contains a control character");
	parse_fails(f, "PidFile: /run/\x7f\n",
		    "tpops.conf:1: PidFile: the value contains a control character");
	/* a tab inside a value is not a control character here */
	parse_ok(f, "MySQL_User: \"a\tb\"\n");
	assert_string_equal(f->cfg.mysql_user, "a\tb");
}

static void test_long_line(void **state)
{
	struct fixture *f = *state;
	char *text = malloc(6000);
	assert_non_null(text);
	/* exactly 4096 bytes before the line end is allowed */
	memcpy(text, "MySQL_Pass: ", 12);
	memset(text + 12, 'x', 4096 - 12);
	memcpy(text + 4096, "\r\n", 3);
	parse_ok(f, text);
	assert_int_equal(strlen(f->cfg.mysql_pass), 4096 - 12);

	memcpy(text, "Port: 1\n", 8);
	memcpy(text + 8, "MySQL_Pass: ", 12);
	memset(text + 20, 'x', 4097 - 12);
	memcpy(text + 8 + 4097, "\n", 2);
	parse_fails(f, text, "tpops.conf:2: the line is longer than 4096 bytes");
	/* a long comment line is still a long line */
	text[8] = '#';
	parse_fails(f, text, "tpops.conf:2: the line is longer than 4096 bytes");
	free(text);
}

static void test_nul_byte(void **state)
{
	struct fixture *f = *state;
	static const char text[] = "Port: 1\n\nHostname: a\0b\nPort: 2\n";
	int rc = config_parse(&f->cfg, "x.conf", text, sizeof(text) - 1, f->err, sizeof(f->err));
	assert_int_equal(rc, -1);
	assert_string_equal(f->err, "x.conf:3: the line holds a NUL byte");
	static const char comment[] = "# \0\n";
	rc = config_parse(&f->cfg, "x.conf", comment, sizeof(comment) - 1, f->err,
			  sizeof(f->err));
	assert_int_equal(rc, -1);
	assert_string_equal(f->err, "x.conf:1: the line holds a NUL byte");
}

static void test_error_line_numbers(void **state)
{
	struct fixture *f = *state;
	parse_fails(f,
		    "# tpops.conf\n"
		    "\n"
		    "Port: 110\n"
		    "  # indented\n"
		    "Hostname: ok\n"
		    "\n"
		    "Port: abc\n"
		    "Hostname: later\n",
		    "tpops.conf:7: Port: \"abc\" is not a number from 1 to 65535");
	/* parsing stops at the first error */
	assert_string_equal(f->cfg.hostname, "ok");
}

static void test_error_buffer(void **state)
{
	struct fixture *f = *state;
	/* no error buffer at all */
	assert_int_equal(config_parse(&f->cfg, "t", "Port: x\n", 8, NULL, 0), -1);
	/* a small one gets a truncated, terminated message */
	char small[12];
	memset(small, 'z', sizeof(small));
	assert_int_equal(config_parse(&f->cfg, "t", "Port: x\n", 8, small, sizeof(small)), -1);
	assert_string_equal(small, "t:1: Port: ");
	/* a NULL name still gives a message */
	char err[128];
	assert_int_equal(config_parse(&f->cfg, NULL, "Port: x\n", 8, err, sizeof(err)), -1);
	assert_string_equal(err, "(config):1: Port: \"x\" is not a number from 1 to 65535");
	/* success clears an old message */
	strcpy(f->err, "old");
	parse_ok(f, "Port: 1\n");
}

static void test_free_twice(void **state)
{
	struct fixture *f = *state;
	parse_ok(f, "MySQL_Pass: secret\nTLS_Cert: /c\nPidFile: /p\n");
	config_free(&f->cfg);
	assert_null(f->cfg.mysql_pass);
	assert_null(f->cfg.hostname);
	assert_null(f->cfg.listen);
	assert_null(f->cfg.path);
	config_free(&f->cfg); /* the teardown frees a third time */
}

static void test_defaults_after_free(void **state)
{
	struct fixture *f = *state;
	parse_ok(f, "Port: 5\nMySQL_Pass: p\n");
	config_free(&f->cfg);
	config_defaults(&f->cfg);
	assert_int_equal(f->cfg.port, DEFAULT_PORT);
	assert_null(f->cfg.mysql_pass);
}

/* Writes text to a temporary file and returns its name. */
static void temp_file(char *name, size_t size, const char *text, size_t len)
{
	snprintf(name, size, "/tmp/test_config.XXXXXX");
	int fd = mkstemp(name);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	close(fd);
}

static void test_load(void **state)
{
	struct fixture *f = *state;
	char name[64];
	const char text[] = "Port: 2110\r\nMySQL_Pass: \"x y\"\r\n";
	temp_file(name, sizeof(name), text, sizeof(text) - 1);
	config_free(&f->cfg);
	assert_int_equal(config_load(&f->cfg, name, f->err, sizeof(f->err)), 0);
	assert_string_equal(f->err, "");
	assert_int_equal(f->cfg.port, 2110);
	assert_string_equal(f->cfg.mysql_pass, "x y");
	assert_string_equal(f->cfg.path, name);
	/* defaults come first */
	assert_int_equal(f->cfg.lock_lease, DEFAULT_LOCK_LEASE);
	unlink(name);
}

static void test_load_parse_error(void **state)
{
	struct fixture *f = *state;
	char name[64], want[160];
	const char text[] = "Port: 1\nBogus: 2\n";
	temp_file(name, sizeof(name), text, sizeof(text) - 1);
	config_free(&f->cfg);
	assert_int_equal(config_load(&f->cfg, name, f->err, sizeof(f->err)), -1);
	snprintf(want, sizeof(want), "%s:2: unknown key \"Bogus\"", name);
	assert_string_equal(f->err, want);
	unlink(name);
}

static void test_load_errors(void **state)
{
	struct fixture *f = *state;
	config_free(&f->cfg);
	assert_int_equal(config_load(&f->cfg, "/nonexistent/tpops.conf", f->err, sizeof(f->err)),
			 -1);
	assert_string_equal(f->err, "/nonexistent/tpops.conf: cannot read: No such file or directory");
	/* the struct is usable (defaults) after a failed load */
	assert_int_equal(f->cfg.port, DEFAULT_PORT);

	config_free(&f->cfg);
	assert_int_equal(config_load(&f->cfg, "/tmp", f->err, sizeof(f->err)), -1);
	assert_string_equal(f->err, "/tmp: cannot read: Is a directory");
}

static void test_load_too_big(void **state)
{
	struct fixture *f = *state;
	char name[64], want[160];
	size_t size = 1024 * 1024;
	char *text = malloc(size + 1);
	assert_non_null(text);
	/* a file of exactly 1 MiB of comments is accepted */
	for (size_t i = 0; i < size; i += 64) {
		memset(text + i, ' ', 64);
		text[i] = '#';
		text[i + 63] = '\n';
	}
	temp_file(name, sizeof(name), text, size);
	config_free(&f->cfg);
	assert_int_equal(config_load(&f->cfg, name, f->err, sizeof(f->err)), 0);
	unlink(name);

	text[size] = '\n';
	temp_file(name, sizeof(name), text, size + 1);
	config_free(&f->cfg);
	assert_int_equal(config_load(&f->cfg, name, f->err, sizeof(f->err)), -1);
	snprintf(want, sizeof(want), "%s: cannot read: larger than 1048576 bytes", name);
	assert_string_equal(f->err, want);
	unlink(name);
	free(text);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_defaults),
		T(test_empty_text),
		T(test_every_key),
		T(test_seed_style),
		T(test_equals_separator),
		T(test_case_insensitive),
		T(test_bools),
		T(test_quotes),
		T(test_quote_errors),
		T(test_comments),
		T(test_whitespace),
		T(test_crlf),
		T(test_no_final_newline),
		T(test_utf8_bom),
		T(test_duplicate_keys),
		T(test_optional_and_empty),
		T(test_empty_values),
		T(test_metrics_listen),
		T(test_unknown_key),
		T(test_missing_separator),
		T(test_bad_numbers),
		T(test_number_bounds),
		T(test_bad_enums_and_bools),
		T(test_bad_addresses),
		T(test_many_addresses),
		T(test_bad_hostname),
		T(test_control_characters),
		T(test_long_line),
		T(test_nul_byte),
		T(test_error_line_numbers),
		T(test_error_buffer),
		T(test_free_twice),
		T(test_defaults_after_free),
		T(test_load),
		T(test_load_parse_error),
		T(test_load_errors),
		T(test_load_too_big),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
