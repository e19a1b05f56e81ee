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

#include "db.h"

enum stmt_id {
	ST_USER_BY_LOGIN,
	ST_USER_BY_MAIL,
	ST_USER_ADD,
	ST_USER_DELETE,
	ST_USER_SET_PASSWORD,
	ST_USER_LIST,
	ST_USER_LOCK_ROW,
	ST_LOCK_EXPIRE,
	ST_LOCK_INSERT,
	ST_LOCK_OWNED,
	ST_LOCK_OWNED_FOR_UPDATE,
	ST_LOCK_RENEW,
	ST_LOCK_RELEASE,
	ST_MSG_LIST,
	ST_MSG_LENGTHS,
	ST_MSG_HEADER_PIECE,
	ST_MSG_BODY_PIECE,
	ST_MSG_PARTS,
	ST_MSG_DELETE,
	ST_MSG_PART_DELETE,
	ST_MSG_INSERT,
	ST_MSG_PART_INSERT,
	ST_MSG_USAGE,
	ST_COLUMN_INFO,
	ST_TABLE_ENGINE,
	ST_INDEX_COLUMNS,
	ST_SEED_CHECK,
	ST_SEED_CONVERT,
	ST_COUNT
};

struct db_mysql {
	struct db db;
	MYSQL *conn;
	MYSQL_STMT *stmts[ST_COUNT];
	/* where to (re)connect */
	char *host, *user, *pass, *dbname, *socket;
	unsigned int port;
	bool broken;         /* the connection was lost: reconnect before use */
	bool op_fresh;       /* this operation made its connection */
	int op_statements;   /* statements this operation has sent */
	/* sizes bounded by the server's max_allowed_packet */
	uint64_t inline_max; /* largest message kept in header and body */
	size_t part_size;    /* msg_part rows written */
	size_t read_max;     /* octets read in one statement */
	/* lengths of the last message read (ids are never reused, and a
	 * stored message never changes) */
	int64_t cached_id;
	uint64_t cached_header_len, cached_body_len;
	char error[512];
};

static inline struct db_mysql *db_mysql(struct db *db)
{
	return (struct db_mysql *)db;
}

/* connection and retry policy (db_mysql_conn.c) */
int dbm_fail_stmt(struct db_mysql *d, MYSQL_STMT *s, const char *what);
int dbm_fail_conn(struct db_mysql *d, const char *what);
void dbm_close_statements(struct db_mysql *d);
int dbm_ready(struct db_mysql *d);
bool dbm_retry(struct db_mysql *d, int status);

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
int dbm_begin(struct db_mysql *d);
int dbm_commit(struct db_mysql *d);
void dbm_rollback(struct db_mysql *d);
int dbm_changed_one(int status, uint64_t affected);

/* the operations of db_mysql_ops, by job */
int mysql_open(const struct config *cfg, struct db **db_r, char *err, size_t errlen);
void mysql_close_db(struct db *db);
const char *mysql_error_text(struct db *db);
int mysql_schema_install(struct db *db);
int mysql_user_by_login(struct db *db, const char *login, struct user *u);
int mysql_user_by_mail(struct db *db, const char *mail, struct user *u);
int mysql_user_add(struct db *db, const struct user *u);
int mysql_user_delete(struct db *db, const char *login);
int mysql_user_set_password(struct db *db, const char *login, const char *passwd);
int mysql_user_list(struct db *db, void (*each)(const struct user *u, void *ctx), void *ctx);
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
int mysql_msg_usage(struct db *db, int64_t uid, uint64_t *bytes_r);

#endif
