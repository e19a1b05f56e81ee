/* tpops.conf -> struct config. The only place the configuration is parsed. */
#ifndef TPOPS_CONFIG_H
#define TPOPS_CONFIG_H
#include <stdbool.h>
#include <stddef.h>

enum config_database { DATABASE_SQLITE, DATABASE_MYSQL };
enum config_mailbox { MAILBOX_SQL, MAILBOX_MAILDIR };
enum config_log { LOG_TO_SYSLOG, LOG_TO_STDERR };
enum config_log_level { LOGLEVEL_ERROR, LOGLEVEL_INFO, LOGLEVEL_DEBUG };

struct config {
	char *path; /* the file this was read from */
	unsigned refs; /* config_hold/config_release; 0 for configs not shared */

	/* seed keys */
	int port;                 /* Port */
	char *hostname;           /* Hostname */
	int connection_keep_time; /* ConnectionKeepTime, seconds */
	int command_timeout;      /* CommandTimeout, seconds */
	enum config_mailbox mailbox; /* Mailbox: MySQL|Database -> SQL, Maildir */
	char *mysql_server, *mysql_user, *mysql_pass, *mysql_db;

	/* keys tpops adds */
	enum config_database database; /* Database: sqlite|mysql */
	char *sqlite_path;
	int mysql_port;
	char *mysql_socket;
	int mysql_failback_time; /* MySQL_FailbackTime, seconds; 0: only at SIGHUP */
	char **listen; /* Listen: NULL-terminated list of addresses */
	int tls_port;  /* -1: not set (995 when a certificate is set) */
	char *tls_cert, *tls_key;
	bool require_tls;
	int tls_ticket_key_lifetime; /* seconds between ticket key rotations */
	char *maildir_root;
	char *user, *group;
	int max_connections, max_connections_per_ip;
	int auth_failure_delay; /* seconds */
	int lock_lease;         /* seconds */
	enum config_log log;
	enum config_log_level log_level;
	char *pid_file;
	bool foreground;
	int syslog_facility; /* SyslogFacility: a LOG_* facility of syslog.h */
	char **auth_mechanisms; /* AuthMechanisms: SASL mechanisms offered, NULL-terminated */
	char *auth_secret;      /* AuthSecret: keys SCRAM salts of unknown users */
	bool plaintext_loopback; /* RequireTLS exempts clients on loopback */
	int auth_failure_delay_max; /* AuthFailureDelayMax: cap of the growing delay */
	bool proxy_protocol;    /* ProxyProtocol: connections start with a PROXY header */
	bool apop;              /* APOP: the greeting offers APOP (a timestamp) */
	int io_threads; /* IOThreads: event loops; 0 = one per core */
	int workers;    /* Workers: storage worker threads; 0 = two per core */
	char *lmtp_listen;         /* LMTP_Listen: Unix socket path or inet:HOST:PORT; NULL = off */
	int lmtp_max_message_size; /* LMTP_MaxMessageSize: octets */
	int lmtp_timeout;          /* LMTP_Timeout: seconds of silence */
	int lmtp_max_connections;  /* LMTP_MaxConnections */
	char *control_socket; /* ControlSocket: tpops-admin's Unix socket; NULL = none */
	/* MetricsListen: an IP address (with metrics_port) or the absolute
	 * path of a Unix socket; NULL = no metrics listener */
	char *metrics_listen;
	int metrics_port;
	bool metrics_public; /* "public": an address that is not loopback */
};

/* Fills cfg with every default. */
void config_defaults(struct config *cfg);

/* Parses the text of a configuration file on top of the defaults already in
 * cfg. Pure: no I/O. On error returns -1 and writes "FILE:LINE: message" to
 * err. `name` is the file name used in messages. */
int config_parse(struct config *cfg, const char *name, const char *text, size_t len,
		 char *err, size_t errlen);

/* Reads and parses a file (defaults first). -1 with a message in err. */
int config_load(struct config *cfg, const char *path, char *err, size_t errlen);

void config_free(struct config *cfg);

/* A configuration shared by the daemon's threads lives on the heap and is
 * reference-counted: after SIGHUP, sessions finish on the configuration
 * they started with, and it is freed when the last of them ends.
 * config_new loads a file into a new object holding one reference. */
struct config *config_new(const char *path, char *err, size_t errlen);
const struct config *config_hold(const struct config *cfg);
void config_release(const struct config *cfg);

#endif
