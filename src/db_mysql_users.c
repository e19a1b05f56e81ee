/* The MySQL engine's users: look-ups by login and address, adding,
 * deleting, changing a password, listing. */
#include <mysql.h>
#include <stdlib.h>
#include <string.h>

#include "auth_login.h"
#include "db_mysql.h"

static int user_from_row(struct db_mysql *d, MYSQL_STMT *s, struct user *u)
{
	int64_t uid = 0, quota = 0;
	unsigned long len[6] = {0};
	my_bool is_null[6] = {0};
	MYSQL_BIND out[6];
	dbm_bind_out_i64(&out[0], &uid, &is_null[0]);
	for (int i = 1; i <= 4; i++)
		dbm_bind_out_len(&out[i], &len[i], &is_null[i]);
	dbm_bind_out_i64(&out[5], &quota, &is_null[5]);
	int status = dbm_fetch(d, s, out, "reading a user");
	if (status != DB_OK)
		return status;
	u->uid = uid;
	u->login = dbm_fetch_text(d, s, 1, len[1], is_null[1]);
	u->passwd = dbm_fetch_text(d, s, 2, len[2], is_null[2]);
	u->mail = dbm_fetch_text(d, s, 3, len[3], is_null[3]);
	u->maildir = dbm_fetch_text(d, s, 4, len[4], is_null[4]);
	u->quota = quota;
	return DB_OK;
}

static int user_lookup(struct db_mysql *d, enum stmt_id id, const char *key, struct user *u)
{
	int status = dbm_ready(d);
	if (status != DB_OK)
		return status;
	unsigned long key_len;
	MYSQL_BIND param;
	dbm_bind_text(&param, key, &key_len);
	MYSQL_STMT *s = dbm_stmt(d, id);
	if ((status = dbm_execute(d, s, &param, "looking up a user")) != DB_OK)
		return status;
	status = user_from_row(d, s, u);
	dbm_done(s);
	/* The column's collation also folds accents and ignores trailing
	 * spaces ("ÄLICE", "alice   " find alice): the row it finds counts
	 * only under tpops' one rule (auth_login.h), as in SQLite. */
	const char *found = id == ST_USER_BY_MAIL ? u->mail : u->login;
	if (status == DB_OK && !auth_login_same(found, key)) {
		user_clear(u);
		status = DB_NOT_FOUND;
	}
	return status;
}

static int user_by_login_once(struct db *db, const char *login, struct user *u)
{
	return user_lookup(db_mysql(db), ST_USER_BY_LOGIN, login, u);
}

static int user_by_mail_once(struct db *db, const char *mail, struct user *u)
{
	return user_lookup(db_mysql(db), ST_USER_BY_MAIL, mail, u);
}

int mysql_user_add(struct db *db, const struct user *u)
{
	struct db_mysql *d = db_mysql(db);
	int status = dbm_ready(d);
	if (status != DB_OK)
		return status;
	unsigned long len[4];
	int64_t quota = u->quota;
	MYSQL_BIND params[5];
	dbm_bind_text(&params[0], u->login, &len[0]);
	dbm_bind_text(&params[1], u->passwd, &len[1]);
	dbm_bind_text(&params[2], u->mail, &len[2]);
	dbm_bind_text(&params[3], u->maildir, &len[3]);
	params[1].buffer_type = params[3].buffer_type = MYSQL_TYPE_BLOB;
	dbm_bind_i64(&params[4], &quota);
	return dbm_exec_stmt(d, ST_USER_ADD, params, "adding a user", NULL);
}

/* The login as stored, when login names a user by tpops' rule: deleting
 * or changing by it then touches that row only (the unique key's
 * collation makes it match that row alone). */
static int stored_login(struct db *db, const char *login, char **stored_r)
{
	struct user u = {0};
	int status = mysql_user_by_login(db, login, &u);
	if (status == DB_OK) {
		*stored_r = u.login;
		u.login = NULL;
	}
	user_clear(&u);
	return status;
}

int mysql_user_delete(struct db *db, const char *given)
{
	struct db_mysql *d = db_mysql(db);
	char *login = NULL;
	int status = stored_login(db, given, &login);
	if (status != DB_OK)
		return status;
	unsigned long len;
	MYSQL_BIND param;
	dbm_bind_text(&param, login, &len);
	uint64_t affected = 0;
	status = dbm_exec_stmt(d, ST_USER_DELETE, &param, "deleting a user", &affected);
	free(login);
	return dbm_changed_one(status, affected);
}

int mysql_user_set_password(struct db *db, const char *given, const char *passwd)
{
	struct db_mysql *d = db_mysql(db);
	char *login = NULL;
	int status = stored_login(db, given, &login);
	if (status != DB_OK)
		return status;
	unsigned long len[2];
	MYSQL_BIND params[2];
	dbm_bind_text(&params[0], passwd, &len[0]);
	params[0].buffer_type = MYSQL_TYPE_BLOB;
	dbm_bind_text(&params[1], login, &len[1]);
	uint64_t affected = 0;
	status = dbm_exec_stmt(d, ST_USER_SET_PASSWORD, params, "changing a password", &affected);
	free(login);
	return dbm_changed_one(status, affected);
}

static int user_list_once(struct db *db, void (*each)(const struct user *u, void *ctx), void *ctx)
{
	struct db_mysql *d = db_mysql(db);
	int status = dbm_ready(d);
	if (status != DB_OK)
		return status;
	MYSQL_STMT *s = dbm_stmt(d, ST_USER_LIST);
	if ((status = dbm_execute(d, s, NULL, "listing users")) != DB_OK)
		return status;
	if (mysql_stmt_store_result(s) != 0)
		return dbm_fail_stmt(d, s, "listing users");
	for (;;) {
		struct user u = {0};
		status = user_from_row(d, s, &u);
		if (status != DB_OK)
			break;
		each(&u, ctx);
		user_clear(&u);
	}
	dbm_done(s);
	return status == DB_NOT_FOUND ? DB_OK : status;
}

/* ---- operations that may run again on a new connection ---- */

int mysql_user_by_login(struct db *db, const char *login, struct user *u)
{
	int status = user_by_login_once(db, login, u);
	if (dbm_retry(db_mysql(db), status))
		status = user_by_login_once(db, login, u);
	return status;
}

int mysql_user_by_mail(struct db *db, const char *mail, struct user *u)
{
	int status = user_by_mail_once(db, mail, u);
	if (dbm_retry(db_mysql(db), status))
		status = user_by_mail_once(db, mail, u);
	return status;
}

int mysql_user_list(struct db *db, void (*each)(const struct user *u, void *ctx), void *ctx)
{
	int status = user_list_once(db, each, ctx);
	if (dbm_retry(db_mysql(db), status))
		status = user_list_once(db, each, ctx);
	return status;
}
