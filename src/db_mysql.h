/* What the files of the MySQL/MariaDB engine share (db_mysql*.c): the
 * connection's state, the prepared statements, and the helpers that run
 * them. Nothing outside db_mysql*.c includes this; the rest of tpops sees
 * db_mysql_ops only (db.h). */
#ifndef TPOPS_DB_MYSQL_H
#define TPOPS_DB_MYSQL_H
#include <mysql.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "db.h"
#include "db_mysql_hosts.h"

enum stmt_id {
	ST_USER_BY_LOGIN,
	ST_USER_BY_MAIL,
	ST_USER_ADD,
	ST_USER_DELETE,
	ST_USER_SET_PASSWORD,
	ST_USER_LIST,
	ST_USER_SAMPLES,
	ST_SECRET_GET,
	ST_SECRET_ADD,
	ST_USER_CLAIM,
	ST_USER_UNCLAIM,
	ST_QUOTA_RESTORE,
	ST_LOCK_EXPIRE,
	ST_LOCK_INSERT,
	ST_LOCK_OWNED,
	ST_LOCK_CLAIM,
	ST_LOCK_CONFIRM,
	ST_LOCK_RENEW,
	ST_LOCK_RELEASE,
	ST_MSG_LIST,
	ST_MSG_PIECE,
	ST_MSG_PARTS,
	ST_MSG_DELETE,
	ST_MSG_PART_DELETE,
	ST_MSG_INSERT,
	ST_MSG_PART_INSERT,
	ST_MSG_USAGE,
	ST_MSG_EXISTS,
	ST_IMPORTED_ADD,
	ST_IMPORTED_LIST,
	ST_COLUMN_INFO,
	ST_TABLE_ENGINE,
	ST_INDEX_COLUMNS,
	ST_SEED_CHECK,
	ST_LOGIN_CONFLICTS,
	ST_MAIL_CONFLICTS,
	ST_SEED_CONVERT,
	ST_COUNT
};

struct db_mysql {
	struct db db;
	MYSQL *conn;
	MYSQL_STMT *stmts[ST_COUNT];
	/* where to (re)connect */
	struct mysql_hosts hosts;
	char *user, *pass, *dbname, *socket;
	size_t host_at;      /* the host of conn */
	size_t next_host;    /* where the next connection starts looking */
	int64_t connected_ms; /* monotonic milliseconds, for the move back; 0: never connected */
	int64_t failback_ms;  /* MySQL_FailbackTime; 0: only at SIGHUP */
	unsigned int generation; /* of db_mysql_failback() when connected */
	bool galera;         /* the server is a Galera node (wsrep_on) */
	bool broken;         /* the connection was lost: reconnect before use */
	/* the attempt under way (db_mysql_retry.c) */
	int attempt;           /* 1, 2... */
	unsigned int last_err; /* the error that ended it */
	bool in_txn;           /* between START TRANSACTION and its end */
	bool starting_txn;     /* in dbm_begin, before START TRANSACTION */
	bool committing;       /* COMMIT sent, no answer yet */
	bool autocommit_off;   /* inside dbm_begin's transaction, until its end */
	bool outcome_unknown;  /* lost while a change may have been committed */
	uint64_t random;       /* jitter */
	/* sizes bounded by the server's max_allowed_packet */
	uint64_t inline_max; /* largest message kept in header and body */
	size_t part_size;    /* msg_part rows written */
	size_t read_max;     /* octets read in one statement */
	/* the last message read (ids are never reused, and a stored message
	 * never changes): a piece past its columns goes straight to msg_part */
	int64_t cached_id;
	uint64_t cached_columns_len; /* header || body */
	bool cached_has_parts;
	char error[1024];
};

static inline struct db_mysql *db_mysql(struct db *db)
{
	return (struct db_mysql *)db;
}

/* connection (db_mysql_conn.c) */
void dbm_close_statements(struct db_mysql *d);
int dbm_ready(struct db_mysql *d);
/* Drops the connection after a node failure: the next one starts looking
 * at the host after this one. */
void dbm_drop_host(struct db_mysql *d);
/* Host i as the metrics name it (host:port, or the socket). */
const char *dbm_server_label(const struct db_mysql *d, size_t i, char *buf, size_t len);

/* retry policy (db_mysql_retry.c) */
enum dbm_repeat {
	/* running it again changes nothing more than running it once: reads,
	 * lease statements, QUIT's deletes (message ids are never reused) */
	DBM_REPEATABLE,
	/* run again only when the server cannot have committed it */
	DBM_ONCE,
};
/* Runs attempt_once (which starts with a ready connection) until it
 * succeeds, answers (not found, conflict, quota) or fails in a way the
 * retry policy reports; returns its status. */
int dbm_run(struct db_mysql *d, enum dbm_repeat repeat,
	    int (*attempt_once)(struct db_mysql *d, void *arg), void *arg);
/* Records a failure (d->error, d->last_err, a lost connection) and maps
 * the error to a db_status. */
int dbm_fail_code(struct db_mysql *d, unsigned int err, const char *msg, const char *what);
int dbm_fail_stmt(struct db_mysql *d, MYSQL_STMT *s, const char *what);
int dbm_fail_conn(struct db_mysql *d, const char *what);

/* statements (db_mysql_stmt.c) */
MYSQL_STMT *dbm_stmt(struct db_mysql *d, enum stmt_id id);
void dbm_bind_i64(MYSQL_BIND *b, const int64_t *v);
void dbm_bind_text(MYSQL_BIND *b, const char *s, unsigned long *len);
void dbm_bind_bytes(MYSQL_BIND *b, const void *p, unsigned long *len);
void dbm_bind_out_len(MYSQL_BIND *b, unsigned long *len, my_bool *is_null);
void dbm_bind_out_i64(MYSQL_BIND *b, int64_t *v, my_bool *is_null);
int dbm_execute(struct db_mysql *d, MYSQL_STMT *s, MYSQL_BIND *params, const char *what);
int dbm_fetch(struct db_mysql *d, MYSQL_STMT *s, MYSQL_BIND *result, const char *what);
int dbm_fetch_bytes(struct db_mysql *d, MYSQL_STMT *s, unsigned int col, unsigned long offset,
		    void *buf, unsigned long len, const char *what);
char *dbm_fetch_text(struct db_mysql *d, MYSQL_STMT *s, unsigned int col, unsigned long len,
		     my_bool is_null);
void dbm_done(MYSQL_STMT *s);
int dbm_exec_stmt(struct db_mysql *d, enum stmt_id id, MYSQL_BIND *params, const char *what,
		  uint64_t *affected_r);
int dbm_query_i64(struct db_mysql *d, enum stmt_id id, MYSQL_BIND *params, int64_t *v,
		  const char *what);
int dbm_plain_query(struct db_mysql *d, const char *sql, const char *what);
int dbm_begin(struct db_mysql *d, const enum stmt_id *uses, size_t count);
int dbm_commit(struct db_mysql *d);
void dbm_rollback(struct db_mysql *d);
int dbm_changed_one(int status, uint64_t affected);

/* the operations of db_mysql_ops, by job */
int mysql_open(const struct config *cfg, struct db **db_r, char *err, size_t errlen);
void mysql_close_db(struct db *db);
const char *mysql_error_text(struct db *db);
int mysql_schema_install(struct db *db);
int mysql_schema_check(struct db *db);
int mysql_user_by_login(struct db *db, const char *login, struct user *u);
int mysql_user_by_mail(struct db *db, const char *mail, struct user *u);
int mysql_user_add(struct db *db, const struct user *u);
int mysql_user_delete(struct db *db, const char *login);
int mysql_user_set_password(struct db *db, const char *login, const char *passwd);
int mysql_user_list(struct db *db, void (*each)(const struct user *u, void *ctx), void *ctx);
int mysql_salt_key(struct db *db, char **value_r);
int mysql_user_samples(struct db *db, void (*each)(const struct user *u, void *ctx), void *ctx);
int mysql_lock_acquire(struct db *db, int64_t uid, const char *owner, int lease);
int mysql_lock_renew(struct db *db, int64_t uid, const char *owner, int lease);
int mysql_lock_release(struct db *db, int64_t uid, const char *owner);
int dbm_lock_owned(struct db_mysql *d, enum stmt_id id, int64_t uid, const char *owner);
int mysql_msg_list(struct db *db, int64_t uid, struct db_msg **msgs_r, size_t *count_r);
int mysql_msg_read(struct db *db, int64_t id, uint64_t offset, void *buf, size_t len,
		   size_t *got_r);
int mysql_msg_delete(struct db *db, int64_t uid, const char *owner, const int64_t *ids,
		     size_t count);
int mysql_msg_store(struct db *db, int64_t uid, int64_t quota, const char *header,
		    size_t header_len, const char *body, size_t body_len, uint64_t size);
int mysql_msg_import(struct db *db, int64_t uid, const char *header, size_t header_len,
		     const char *body, size_t body_len, uint64_t size, const char *uidl);
int mysql_msg_imported(struct db *db, int64_t uid, void (*each)(const char *uidl, void *ctx),
		       void *ctx);
int mysql_msg_usage(struct db *db, int64_t uid, uint64_t *bytes_r);

#endif
