/* The MySQL engine's maildrop lock leases: a row of `locks` per locked
 * maildrop (uid is its primary key), with an expiry on the database
 * server's clock. Every lease statement is safe to run again: a retried
 * acquire finds its own row, a renewal matches it again (CLIENT_FOUND_ROWS),
 * a release finds it gone. On Galera, two servers that take the same free
 * lease through two nodes both insert the row; certification lets one
 * commit and the other gets 1213, runs again (db_mysql_retry.c) and finds
 * the winner's row: one +OK, one [IN-USE]. */
#include <mysql.h>

#include "db_mysql.h"

struct lease {
	int64_t uid;
	const char *owner;
	int seconds;
};

/* DB_OK when owner holds uid's lock (a row, whatever its expiry). */
int dbm_lock_owned(struct db_mysql *d, enum stmt_id id, int64_t uid, const char *owner)
{
	unsigned long len;
	MYSQL_BIND params[2];
	dbm_bind_i64(&params[0], &uid);
	dbm_bind_text(&params[1], owner, &len);
	int64_t one = 0;
	return dbm_query_i64(d, id, params, &one, "checking the lock");
}

static int lock_acquire_once(struct db_mysql *d, void *arg)
{
	const struct lease *l = arg;
	/* An expired lease (a crashed server's, or a seed-era row with no
	 * expiry) is removed; then the insert either takes the free lock or
	 * finds another owner's row. Each statement is atomic on its own. */
	int64_t uid = l->uid, lease64 = l->seconds;
	MYSQL_BIND params[3];
	dbm_bind_i64(&params[0], &uid);
	int status = dbm_exec_stmt(d, ST_LOCK_EXPIRE, params, "expiring a lock", NULL);
	if (status != DB_OK)
		return status;
	unsigned long len;
	dbm_bind_text(&params[1], l->owner, &len);
	dbm_bind_i64(&params[2], &lease64);
	uint64_t inserted = 0;
	status = dbm_exec_stmt(d, ST_LOCK_INSERT, params, "taking a lock", &inserted);
	if (status != DB_OK)
		return status;
	if (inserted > 0)
		return DB_OK;
	/* ours already (a retried acquire) or another owner's */
	status = dbm_lock_owned(d, ST_LOCK_OWNED, uid, l->owner);
	return status == DB_NOT_FOUND ? DB_CONFLICT : status;
}

static int lock_renew_once(struct db_mysql *d, void *arg)
{
	const struct lease *l = arg;
	unsigned long len;
	int64_t uid = l->uid, lease64 = l->seconds;
	MYSQL_BIND params[3];
	dbm_bind_i64(&params[0], &lease64);
	dbm_bind_i64(&params[1], &uid);
	dbm_bind_text(&params[2], l->owner, &len);
	uint64_t matched = 0;
	int status = dbm_exec_stmt(d, ST_LOCK_RENEW, params, "renewing a lock", &matched);
	return dbm_changed_one(status, matched);
}

static int lock_release_once(struct db_mysql *d, void *arg)
{
	const struct lease *l = arg;
	unsigned long len;
	int64_t uid = l->uid;
	MYSQL_BIND params[2];
	dbm_bind_i64(&params[0], &uid);
	dbm_bind_text(&params[1], l->owner, &len);
	uint64_t affected = 0;
	int status = dbm_exec_stmt(d, ST_LOCK_RELEASE, params, "releasing a lock", &affected);
	/* gone on a later attempt: the attempt that lost its connection
	 * may have released it */
	if (status == DB_OK && affected == 0 && d->attempt > 1)
		return DB_OK;
	return dbm_changed_one(status, affected);
}

int mysql_lock_acquire(struct db *db, int64_t uid, const char *owner, int lease)
{
	struct lease l = {uid, owner, lease};
	return dbm_run(db_mysql(db), DBM_REPEATABLE, lock_acquire_once, &l);
}

int mysql_lock_renew(struct db *db, int64_t uid, const char *owner, int lease)
{
	struct lease l = {uid, owner, lease};
	return dbm_run(db_mysql(db), DBM_REPEATABLE, lock_renew_once, &l);
}

int mysql_lock_release(struct db *db, int64_t uid, const char *owner)
{
	struct lease l = {uid, owner, 0};
	return dbm_run(db_mysql(db), DBM_REPEATABLE, lock_release_once, &l);
}
