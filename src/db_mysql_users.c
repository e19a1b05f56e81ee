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

struct lookup {
	enum stmt_id id;
	const char *key;
	struct user *u;
};

static int user_lookup_once(struct db_mysql *d, void *arg)
{
	struct lookup *l = arg;
	unsigned long key_len;
	MYSQL_BIND param;
	dbm_bind_text(&param, l->key, &key_len);
	MYSQL_STMT *s = dbm_stmt(d, l->id);
	int status = dbm_execute(d, s, &param, "looking up a user");
	if (status != DB_OK)
		return status;
	status = user_from_row(d, s, l->u);
	dbm_done(s);
	/* The column's collation also folds accents and ignores trailing
	 * spaces ("ÄLICE", "alice   " find alice): the row it finds counts
	 * only under tpops' one rule (auth_login.h), as in SQLite. */
	const char *found = l->id == ST_USER_BY_MAIL ? l->u->mail : l->u->login;
	if (status == DB_OK && !auth_login_same(found, l->key)) {
		user_clear(l->u);
		status = DB_NOT_FOUND;
	}
	return status;
}

int mysql_user_by_login(struct db *db, const char *login, struct user *u)
{
	struct lookup l = {ST_USER_BY_LOGIN, login, u};
	return dbm_run(db_mysql(db), DBM_REPEATABLE, user_lookup_once, &l);
}

int mysql_user_by_mail(struct db *db, const char *mail, struct user *u)
{
	struct lookup l = {ST_USER_BY_MAIL, mail, u};
	return dbm_run(db_mysql(db), DBM_REPEATABLE, user_lookup_once, &l);
}

/* The tools' changes run once more only when the server cannot have made
 * them: a second INSERT would report the first one's row as a duplicate. */
static int user_add_once(struct db_mysql *d, void *arg)
{
	const struct user *u = arg;
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

int mysql_user_add(struct db *db, const struct user *u)
{
	return dbm_run(db_mysql(db), DBM_ONCE, user_add_once, (void *)u);
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

static int user_delete_once(struct db_mysql *d, void *arg)
{
	const char *login = arg;
	unsigned long len;
	MYSQL_BIND param;
	dbm_bind_text(&param, login, &len);
	uint64_t affected = 0;
	int status = dbm_exec_stmt(d, ST_USER_DELETE, &param, "deleting a user", &affected);
	return dbm_changed_one(status, affected);
}

int mysql_user_delete(struct db *db, const char *given)
{
	char *login = NULL;
	int status = stored_login(db, given, &login);
	if (status != DB_OK)
		return status;
	status = dbm_run(db_mysql(db), DBM_ONCE, user_delete_once, login);
	free(login);
	return status;
}

struct password_change {
	const char *login, *passwd;
};

static int user_set_password_once(struct db_mysql *d, void *arg)
{
	const struct password_change *c = arg;
	unsigned long len[2];
	MYSQL_BIND params[2];
	dbm_bind_text(&params[0], c->passwd, &len[0]);
	params[0].buffer_type = MYSQL_TYPE_BLOB;
	dbm_bind_text(&params[1], c->login, &len[1]);
	uint64_t affected = 0;
	int status =
		dbm_exec_stmt(d, ST_USER_SET_PASSWORD, params, "changing a password", &affected);
	return dbm_changed_one(status, affected);
}

int mysql_user_set_password(struct db *db, const char *given, const char *passwd)
{
	char *login = NULL;
	int status = stored_login(db, given, &login);
	if (status != DB_OK)
		return status;
	struct password_change c = {login, passwd};
	status = dbm_run(db_mysql(db), DBM_ONCE, user_set_password_once, &c);
	free(login);
	return status;
}

struct listing {
	enum stmt_id id; /* ST_USER_LIST or ST_USER_SAMPLES */
	void (*each)(const struct user *u, void *ctx);
	void *ctx;
};

/* Every row is in memory before the first call of each(): a failure
 * comes before any, so running the listing again repeats none. */
static int user_list_once(struct db_mysql *d, void *arg)
{
	struct listing *l = arg;
	MYSQL_STMT *s = dbm_stmt(d, l->id);
	int status = dbm_execute(d, s, NULL, "listing users");
	if (status != DB_OK)
		return status;
	if (mysql_stmt_store_result(s) != 0)
		return dbm_fail_stmt(d, s, "listing users");
	for (;;) {
		struct user u = {0};
		status = user_from_row(d, s, &u);
		if (status != DB_OK)
			break;
		l->each(&u, l->ctx);
		user_clear(&u);
	}
	dbm_done(s);
	return status == DB_NOT_FOUND ? DB_OK : status;
}

int mysql_user_list(struct db *db, void (*each)(const struct user *u, void *ctx), void *ctx)
{
	struct listing l = {ST_USER_LIST, each, ctx};
	return dbm_run(db_mysql(db), DBM_REPEATABLE, user_list_once, &l);
}

int mysql_user_samples(struct db *db, void (*each)(const struct user *u, void *ctx), void *ctx)
{
	struct listing l = {ST_USER_SAMPLES, each, ctx};
	return dbm_run(db_mysql(db), DBM_REPEATABLE, user_list_once, &l);
}

/* ---- the SCRAM salt key ---- */

static int salt_key_once(struct db_mysql *d, void *arg)
{
	char **value_r = arg;
	unsigned long name_len;
	MYSQL_BIND param;
	dbm_bind_text(&param, DB_SALT_KEY_NAME, &name_len);
	MYSQL_STMT *s = dbm_stmt(d, ST_SECRET_GET);
	int status = dbm_execute(d, s, &param, "reading the SCRAM salt key");
	if (status != DB_OK)
		return status;
	unsigned long len = 0;
	my_bool is_null = 0;
	MYSQL_BIND out;
	dbm_bind_out_len(&out, &len, &is_null);
	status = dbm_fetch(d, s, &out, "reading the SCRAM salt key");
	if (status == DB_OK)
		*value_r = dbm_fetch_text(d, s, 0, len, is_null);
	dbm_done(s);
	return status;
}

int mysql_salt_key(struct db *db, char **value_r)
{
	return dbm_run(db_mysql(db), DBM_REPEATABLE, salt_key_once, value_r);
}
