/* The MySQL engine's maildrop lock leases: a row of `locks` per locked
 * maildrop, with an expiry on the database server's clock. */
#include <mysql.h>

#include "db_mysql.h"

int dbm_lock_owned(struct db_mysql *d, enum stmt_id id, int64_t uid, const char *owner)
{
	unsigned long len;
	MYSQL_BIND params[2];
	dbm_bind_i64(&params[0], &uid);
	dbm_bind_text(&params[1], owner, &len);
	int64_t one = 0;
	return dbm_query_i64(d, id, params, &one, "checking the lock");
}

static int lock_acquire_once(struct db *db, int64_t uid, const char *owner, int lease)
{
	struct db_mysql *d = db_mysql(db);
	int status = dbm_ready(d);
	if (status != DB_OK)
		return status;
	/* An expired lease (a crashed server's, or a seed-era row with no
	 * expiry) is removed; then the insert either takes the free lock or
	 * finds another owner's row. Each statement is atomic on its own. */
	MYSQL_BIND params[3];
	dbm_bind_i64(&params[0], &uid);
	if ((status = dbm_exec_stmt(d, ST_LOCK_EXPIRE, params, "expiring a lock", NULL)) != DB_OK)
		return status;
	unsigned long len;
	int64_t lease64 = lease;
	dbm_bind_text(&params[1], owner, &len);
	dbm_bind_i64(&params[2], &lease64);
	uint64_t inserted = 0;
	status = dbm_exec_stmt(d, ST_LOCK_INSERT, params, "taking a lock", &inserted);
	if (status != DB_OK)
		return status;
	if (inserted > 0)
		return DB_OK;
	/* ours already (a retried acquire) or another owner's */
	status = dbm_lock_owned(d, ST_LOCK_OWNED, uid, owner);
	return status == DB_NOT_FOUND ? DB_CONFLICT : status;
}

static int lock_renew_once(struct db *db, int64_t uid, const char *owner, int lease)
{
	struct db_mysql *d = db_mysql(db);
	int status = dbm_ready(d);
	if (status != DB_OK)
		return status;
	unsigned long len;
	int64_t lease64 = lease;
	MYSQL_BIND params[3];
	dbm_bind_i64(&params[0], &lease64);
	dbm_bind_i64(&params[1], &uid);
	dbm_bind_text(&params[2], owner, &len);
	uint64_t matched = 0;
	status = dbm_exec_stmt(d, ST_LOCK_RENEW, params, "renewing a lock", &matched);
	return dbm_changed_one(status, matched);
}

static int lock_release_once(struct db *db, int64_t uid, const char *owner)
{
	struct db_mysql *d = db_mysql(db);
	int status = dbm_ready(d);
	if (status != DB_OK)
		return status;
	unsigned long len;
	MYSQL_BIND params[2];
	dbm_bind_i64(&params[0], &uid);
	dbm_bind_text(&params[1], owner, &len);
	uint64_t affected = 0;
	status = dbm_exec_stmt(d, ST_LOCK_RELEASE, params, "releasing a lock", &affected);
	return dbm_changed_one(status, affected);
}

/* ---- operations that may run again on a new connection ---- */

int mysql_lock_acquire(struct db *db, int64_t uid, const char *owner, int lease)
{
	int status = lock_acquire_once(db, uid, owner, lease);
	if (dbm_retry(db_mysql(db), status))
		status = lock_acquire_once(db, uid, owner, lease);
	return status;
}

int mysql_lock_renew(struct db *db, int64_t uid, const char *owner, int lease)
{
	int status = lock_renew_once(db, uid, owner, lease);
	if (dbm_retry(db_mysql(db), status))
		status = lock_renew_once(db, uid, owner, lease);
	return status;
}

int mysql_lock_release(struct db *db, int64_t uid, const char *owner)
{
	int status = lock_release_once(db, uid, owner);
	if (dbm_retry(db_mysql(db), status))
		status = lock_release_once(db, uid, owner);
	return status;
}
