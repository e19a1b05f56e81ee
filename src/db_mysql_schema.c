/* The MySQL engine's schema: creating the tables of sql/mysql.sql, and
 * upgrading an older or seed-era (original TPOPS) database in place. */
#include <mysql.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_mysql.h"
#include "log.h"
#include "schema_mysql.h"
#include "tpops_limits.h"
#include "xalloc.h"

struct column {
	bool exists;
	char type[32];   /* DATA_TYPE: "varchar", "mediumtext", "longblob"... */
	int64_t length;  /* CHARACTER_MAXIMUM_LENGTH */
	char charset[32];
	bool has_default;
};

static int column_info(struct db_mysql *d, const char *table, const char *name, struct column *c)
{
	*c = (struct column){0};
	unsigned long lens[2];
	MYSQL_BIND params[2];
	dbm_bind_text(&params[0], table, &lens[0]);
	dbm_bind_text(&params[1], name, &lens[1]);
	MYSQL_STMT *s = dbm_stmt(d, ST_COLUMN_INFO);
	int status = dbm_execute(d, s, params, "reading the schema");
	if (status != DB_OK)
		return status;
	unsigned long type_len = 0, charset_len = 0;
	int64_t has_default = 0;
	my_bool is_null[4] = {0};
	MYSQL_BIND out[4];
	memset(out, 0, sizeof out);
	out[0].buffer_type = MYSQL_TYPE_STRING;
	out[0].buffer = c->type;
	out[0].buffer_length = sizeof c->type - 1;
	out[0].length = &type_len;
	out[0].is_null = &is_null[0];
	dbm_bind_out_i64(&out[1], &c->length, &is_null[1]);
	out[2].buffer_type = MYSQL_TYPE_STRING;
	out[2].buffer = c->charset;
	out[2].buffer_length = sizeof c->charset - 1;
	out[2].length = &charset_len;
	out[2].is_null = &is_null[2];
	dbm_bind_out_i64(&out[3], &has_default, &is_null[3]);
	status = dbm_fetch(d, s, out, "reading the schema");
	dbm_done(s);
	if (status == DB_NOT_FOUND)
		return DB_OK;
	if (status != DB_OK)
		return status;
	c->exists = true;
	c->type[type_len < sizeof c->type ? type_len : sizeof c->type - 1] = '\0';
	c->charset[charset_len < sizeof c->charset ? charset_len : sizeof c->charset - 1] = '\0';
	c->has_default = has_default != 0;
	return DB_OK;
}

/* The one text value the statement answers with ("" for none or NULL),
 * given its parameters a and b (each NULL when the statement has fewer);
 * what says what the statement does, for errors. */
static int text_answer(struct db_mysql *d, enum stmt_id id, const char *a, const char *b,
		       const char *what, char *out, size_t outlen)
{
	unsigned long lens[2], got = 0;
	MYSQL_BIND params[2];
	if (a != NULL)
		dbm_bind_text(&params[0], a, &lens[0]);
	if (b != NULL)
		dbm_bind_text(&params[1], b, &lens[1]);
	MYSQL_STMT *s = dbm_stmt(d, id);
	int status = dbm_execute(d, s, a != NULL ? params : NULL, what);
	if (status != DB_OK)
		return status;
	my_bool is_null = 0;
	MYSQL_BIND res;
	memset(&res, 0, sizeof res);
	res.buffer_type = MYSQL_TYPE_STRING;
	res.buffer = out;
	res.buffer_length = (unsigned long)outlen - 1;
	res.length = &got;
	res.is_null = &is_null;
	status = dbm_fetch(d, s, &res, what);
	dbm_done(s);
	if (status == DB_NOT_FOUND || (status == DB_OK && is_null))
		got = 0;
	out[got < outlen ? got : outlen - 1] = '\0';
	return status == DB_NOT_FOUND ? DB_OK : status;
}

static int text_query(struct db_mysql *d, enum stmt_id id, const char *a, const char *b, char *out,
		      size_t outlen)
{
	return text_answer(d, id, a, b, "reading the schema", out, outlen);
}

static bool is_text_type(const char *type)
{
	static const char *const text[] = {"char", "varchar", "tinytext", "text", "mediumtext",
					   "longtext"};
	for (size_t i = 0; i < sizeof text / sizeof text[0]; i++)
		if (strcmp(type, text[i]) == 0)
			return true;
	return false;
}

/* A column that is missing, of another type, narrower than `length`, or
 * (with charset) in another character set. */
static bool column_differs(const struct column *c, const char *type, int64_t length,
			   const char *charset)
{
	return !c->exists || strcmp(c->type, type) != 0 || c->length < length ||
	       (charset != NULL && strcmp(c->charset, charset) != 0);
}

struct alter {
	char sql[2048];
	size_t clauses;
};

static void alter_add(struct alter *a, const char *clause)
{
	size_t len = strlen(a->sql);
	snprintf(a->sql + len, sizeof a->sql - len, "%s%s", a->clauses++ ? ", " : " ", clause);
}

static int alter_run(struct db_mysql *d, struct alter *a, const char *what)
{
	if (a->clauses == 0)
		return DB_OK;
	return dbm_plain_query(d, a->sql, what);
}

/* The groups of users the statement finds (ST_LOGIN_CONFLICTS or
 * ST_MAIL_CONFLICTS), as text; "" when there are none. */
static int conflicts_query(struct db_mysql *d, enum stmt_id id, char *out, size_t outlen)
{
	return text_answer(d, id, NULL, NULL, "looking for users that differ only in case", out,
			   outlen);
}

/* Users that the login rule makes one (and the case-insensitive unique
 * keys the upgrade gives login and mail): logins or addresses equal but
 * for letter case, which a database made with a case-sensitive collation
 * may hold as different users. The ALTER would fail on them with a bare
 * duplicate-key error, and left as they are a login would find either:
 * named here with what to do, before anything changes. */
static int check_case_conflicts(struct db_mysql *d)
{
	static const struct {
		enum stmt_id id;
		const char *column, *what;
	} checks[] = {{ST_LOGIN_CONFLICTS, "login", "logins"}, {ST_MAIL_CONFLICTS, "mail", "addresses"}};
	for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++) {
		/* up to 5 groups, cut short if longer: the message around it
		 * takes about 430 of d->error's 1024 bytes */
		char found[480];
		int status = conflicts_query(d, checks[i].id, found, sizeof found);
		if (status != DB_OK)
			return status;
		if (found[0] == '\0')
			continue;
		snprintf(d->error, sizeof d->error,
			 "mysql: these users have %s that differ only in letter case (or accents, "
			 "or trailing spaces, which MariaDB's unique key ignores too): %s. tpops "
			 "takes such %s to name one user (docs/SECURITY.md, \"Logins\"), so each "
			 "must have one of its own: rename or delete all but one of each group by "
			 "uid (UPDATE `user` SET %s = ... WHERE uid = ...; tpops-userdel cannot "
			 "tell them apart), then run tpops-dbinit again. Nothing was changed",
			 checks[i].what, found, checks[i].what, checks[i].column);
		return DB_CONFLICT;
	}
	return DB_OK;
}

static int upgrade_user(struct db_mysql *d)
{
	struct column login, passwd, mail, maildir, quota;
	char engine[64];
	int status;
	if ((status = text_query(d, ST_TABLE_ENGINE, "user", NULL, engine, sizeof engine)) != DB_OK ||
	    (status = column_info(d, "user", "login", &login)) != DB_OK ||
	    (status = column_info(d, "user", "passwd", &passwd)) != DB_OK ||
	    (status = column_info(d, "user", "mail", &mail)) != DB_OK ||
	    (status = column_info(d, "user", "maildir", &maildir)) != DB_OK ||
	    (status = column_info(d, "user", "quota", &quota)) != DB_OK)
		return status;
	if ((status = check_case_conflicts(d)) != DB_OK)
		return status;
	struct alter a = {"ALTER TABLE `user`", 0};
	if (strcmp(engine, "InnoDB") != 0)
		alter_add(&a, "ENGINE=InnoDB");
	/* latin1 text becomes the same text in utf8mb4 (seed logins and
	 * addresses are ASCII), and a case-sensitive collation utf8mb4's
	 * default; passwords and paths stay the same octets */
	if (column_differs(&login, "varchar", 255, "utf8mb4"))
		alter_add(&a, "MODIFY login VARCHAR(255) CHARACTER SET utf8mb4 NOT NULL");
	if (column_differs(&passwd, "varbinary", 255, NULL))
		alter_add(&a, "MODIFY passwd VARBINARY(255) NOT NULL");
	if (column_differs(&mail, "varchar", 255, "utf8mb4"))
		alter_add(&a, "MODIFY mail VARCHAR(255) CHARACTER SET utf8mb4 NOT NULL");
	if (column_differs(&maildir, "varbinary", 1024, NULL) || !maildir.has_default)
		alter_add(&a, "MODIFY maildir VARBINARY(1024) NOT NULL DEFAULT ''");
	if (column_differs(&quota, "bigint", 0, NULL) || !quota.has_default)
		alter_add(&a, "MODIFY quota BIGINT NOT NULL DEFAULT 0");
	if (a.clauses > 0)
		alter_add(&a, "DEFAULT CHARACTER SET utf8mb4");
	return alter_run(d, &a, "upgrading table user");
}

/* A quota is never negative (0 is none), but a delivery through Galera by
 * an earlier tpops could leave one negated, which then counted nothing:
 * the server had aborted its transaction without reporting it, and the
 * release ran alone (docs/mysql.md). The claim only negated it, so
 * negating it again restores it. A delivery under way holds its claim
 * uncommitted: this waits for it, or conflicts with it, and then finds
 * that quota positive. */
static int restore_negated_quotas(struct db_mysql *d)
{
	uint64_t restored = 0;
	int status =
		dbm_exec_stmt(d, ST_QUOTA_RESTORE, NULL, "restoring negated quotas", &restored);
	if (status == DB_OK && restored > 0)
		log_warn("mysql: restored the quota of %llu user(s), left negated by a delivery "
			 "whose transaction the server aborted without reporting it",
			 (unsigned long long)restored);
	return status;
}

/* Before anything changes: the conversion rewrites each message in one
 * REPLACE(), whose result must fit in the server's max_allowed_packet. */
static int check_seed_rows(struct db_mysql *d)
{
	int64_t max_value = 0, failing = 0, packet = 0;
	MYSQL_STMT *s = dbm_stmt(d, ST_SEED_CHECK);
	int status = dbm_execute(d, s, NULL, "checking seed-era messages");
	if (status != DB_OK)
		return status;
	my_bool is_null[3] = {0};
	MYSQL_BIND out[3];
	dbm_bind_out_i64(&out[0], &max_value, &is_null[0]);
	dbm_bind_out_i64(&out[1], &failing, &is_null[1]);
	dbm_bind_out_i64(&out[2], &packet, &is_null[2]);
	status = dbm_fetch(d, s, out, "checking seed-era messages");
	dbm_done(s);
	if (status != DB_OK && status != DB_NOT_FOUND)
		return status;
	if (failing > 0 || max_value > packet) {
		snprintf(d->error, sizeof d->error,
			 "mysql: converting the seed-era messages needs a larger max_allowed_packet "
			 "than %lld (%s): raise it on the server (SET GLOBAL max_allowed_packet = "
			 "1073741824) and run tpops-dbinit again; nothing was changed",
			 (long long)packet,
			 failing > 0 ? "some messages are larger than it"
				     : "a converted message would be larger");
		return DB_PERMFAIL;
	}
	return DB_OK;
}

/* Converts the seed-era rows, a batch per transaction; each row is marked
 * done in the same update, so an interrupted run resumes where it
 * stopped and converts no row twice. */
static int convert_seed_rows(struct db_mysql *d)
{
	for (;;) {
		int64_t batch = MYSQL_UPGRADE_BATCH;
		MYSQL_BIND param;
		dbm_bind_i64(&param, &batch);
		uint64_t converted = 0;
		int status = dbm_exec_stmt(d, ST_SEED_CONVERT, &param, "converting seed-era messages",
				       &converted);
		if (status != DB_OK)
			return status;
		if (converted == 0)
			return DB_OK;
	}
}

static int upgrade_msg(struct db_mysql *d)
{
	struct column id, msgno, header, body, size, marker, uidl;
	char engine[64], arrival[128], seed_index[128];
	int status;
	if ((status = text_query(d, ST_TABLE_ENGINE, "msg", NULL, engine, sizeof engine)) != DB_OK ||
	    (status = text_query(d, ST_INDEX_COLUMNS, "msg", "msg_arrival", arrival,
				 sizeof arrival)) != DB_OK ||
	    (status = text_query(d, ST_INDEX_COLUMNS, "msg", "uid", seed_index,
				 sizeof seed_index)) != DB_OK ||
	    (status = column_info(d, "msg", "id", &id)) != DB_OK ||
	    (status = column_info(d, "msg", "msgno", &msgno)) != DB_OK ||
	    (status = column_info(d, "msg", "header", &header)) != DB_OK ||
	    (status = column_info(d, "msg", "body", &body)) != DB_OK ||
	    (status = column_info(d, "msg", "size", &size)) != DB_OK ||
	    (status = column_info(d, "msg", "tpops_seed_format", &marker)) != DB_OK ||
	    (status = column_info(d, "msg", "uidl", &uidl)) != DB_OK)
		return status;
	/* Seed-era rows are in text columns. TEXT -> BLOB keeps the octets
	 * as they are (no character set conversion), whatever they hold. The
	 * timestamp column is never touched: the UIDLs are made from it. */
	bool seed = is_text_type(header.type);
	if (seed && (status = check_seed_rows(d)) != DB_OK)
		return status;
	struct alter a = {"ALTER TABLE msg", 0};
	if (strcmp(engine, "InnoDB") != 0)
		alter_add(&a, "ENGINE=InnoDB");
	if (column_differs(&id, "bigint", 0, NULL))
		alter_add(&a, "MODIFY id BIGINT NOT NULL AUTO_INCREMENT");
	if (!msgno.exists)
		alter_add(&a, "ADD COLUMN msgno INT NOT NULL DEFAULT 0 AFTER uid");
	else if (!msgno.has_default) /* strict mode refuses an insert without it */
		alter_add(&a, "MODIFY msgno INT NOT NULL DEFAULT 0");
	if (column_differs(&header, "longblob", 0, NULL))
		alter_add(&a, "MODIFY header LONGBLOB NOT NULL");
	if (column_differs(&body, "longblob", 0, NULL))
		alter_add(&a, "MODIFY body LONGBLOB NOT NULL");
	if (column_differs(&size, "bigint", 0, NULL))
		alter_add(&a, "MODIFY size BIGINT NOT NULL");
	if (strcmp(arrival, "uid,timestamp,id") != 0) {
		if (arrival[0] != '\0')
			alter_add(&a, "DROP INDEX msg_arrival");
		alter_add(&a, "ADD INDEX msg_arrival (uid, timestamp, id)");
	}
	if (!uidl.exists) /* imported UIDLs (tpops-import) */
		alter_add(&a, "ADD COLUMN uidl VARCHAR(70) CHARACTER SET ascii COLLATE ascii_bin NULL");
	if (strcmp(seed_index, "uid") == 0) /* the seed's index (uid): covered now */
		alter_add(&a, "DROP INDEX `uid`");
	if (seed && !marker.exists)
		alter_add(&a, "ADD COLUMN tpops_seed_format TINYINT NOT NULL DEFAULT 1");
	if ((status = alter_run(d, &a, "upgrading table msg")) != DB_OK)
		return status;
	if (seed || marker.exists) {
		/* rows stored from now on are not seed-era rows */
		if ((status = dbm_plain_query(d, "ALTER TABLE msg ALTER COLUMN tpops_seed_format "
					     "SET DEFAULT 0",
					  "upgrading table msg")) != DB_OK ||
		    (status = convert_seed_rows(d)) != DB_OK ||
		    (status = dbm_plain_query(d, "ALTER TABLE msg DROP COLUMN tpops_seed_format",
					  "upgrading table msg")) != DB_OK)
			return status;
	}
	return DB_OK;
}

static int upgrade_locks(struct db_mysql *d)
{
	struct column owner, expires, pid, stamp;
	char engine[64], primary[128], seed_index[128];
	int status;
	if ((status = text_query(d, ST_TABLE_ENGINE, "locks", NULL, engine, sizeof engine)) !=
		    DB_OK ||
	    (status = text_query(d, ST_INDEX_COLUMNS, "locks", "PRIMARY", primary,
				 sizeof primary)) != DB_OK ||
	    (status = text_query(d, ST_INDEX_COLUMNS, "locks", "uid", seed_index,
				 sizeof seed_index)) != DB_OK ||
	    (status = column_info(d, "locks", "owner", &owner)) != DB_OK ||
	    (status = column_info(d, "locks", "expires", &expires)) != DB_OK ||
	    (status = column_info(d, "locks", "pid", &pid)) != DB_OK ||
	    (status = column_info(d, "locks", "timestamp", &stamp)) != DB_OK)
		return status;
	struct alter a = {"ALTER TABLE locks", 0};
	if (strcmp(engine, "InnoDB") != 0)
		alter_add(&a, "ENGINE=InnoDB");
	/* a seed-era row gets expires 0: expired, so free */
	if (!owner.exists)
		alter_add(&a, "ADD COLUMN owner VARCHAR(255) CHARACTER SET utf8mb4 NOT NULL DEFAULT ''");
	if (!expires.exists)
		alter_add(&a, "ADD COLUMN expires BIGINT NOT NULL DEFAULT 0");
	if (pid.exists && !pid.has_default) /* sql.txt of 2002 had pid */
		alter_add(&a, "MODIFY pid INT NOT NULL DEFAULT 0");
	if (stamp.exists && !stamp.has_default)
		alter_add(&a, "MODIFY timestamp TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP");
	/* The seed (and earlier versions of this schema) made uid a UNIQUE key: Galera
	 * needs a primary key on every table it replicates (and refuses
	 * tables without one under wsrep_mode=REQUIRED_PRIMARY_KEY). The
	 * unique key guarantees that there is no duplicate to refuse. In the
	 * same ALTER as the rest, so that no statement meets the table
	 * without its key. */
	if (strcmp(primary, "uid") != 0) {
		if (primary[0] != '\0')
			alter_add(&a, "DROP PRIMARY KEY");
		if (strcmp(seed_index, "uid") == 0)
			alter_add(&a, "DROP INDEX `uid`");
		alter_add(&a, "ADD PRIMARY KEY (uid)");
	}
	return alter_run(d, &a, "upgrading table locks");
}

/* Runs the statements of sql/mysql.sql one by one (each ends with ';' at
 * the end of a line). */
static int create_tables(struct db_mysql *d)
{
	const char *p = schema_mysql_sql;
	char *statement = xmalloc(strlen(p) + 1);
	size_t len = 0;
	int status = DB_OK;
	while (*p != '\0' && status == DB_OK) {
		const char *eol = strchr(p, '\n');
		size_t n = eol ? (size_t)(eol - p) : strlen(p);
		const char *line = p;
		p += n + (eol != NULL);
		while (n > 0 && (line[n - 1] == ' ' || line[n - 1] == '\t' || line[n - 1] == '\r'))
			n--;
		if (n == 0 || strncmp(line, "--", 2) == 0)
			continue;
		memcpy(statement + len, line, n);
		len += n;
		if (line[n - 1] == ';') {
			statement[len - 1] = '\0';
			status = dbm_plain_query(d, statement, "creating the schema");
			len = 0;
		} else {
			statement[len++] = '\n';
		}
	}
	free(statement);
	return status;
}

/* The SCRAM salt key, once: a key already there stays (every server of a
 * cluster reads the same one). */
static int store_salt_key(struct db_mysql *d)
{
	char *key = db_new_salt_key();
	if (key == NULL) {
		snprintf(d->error, sizeof d->error, "no random numbers for the SCRAM salt key");
		return DB_PERMFAIL;
	}
	unsigned long len[2];
	MYSQL_BIND params[2];
	dbm_bind_text(&params[0], DB_SALT_KEY_NAME, &len[0]);
	dbm_bind_text(&params[1], key, &len[1]);
	int status = dbm_exec_stmt(d, ST_SECRET_ADD, params, "storing the SCRAM salt key", NULL);
	free_secret(key, strlen(key) + 1);
	return status;
}

/* At the daemon's start: login and mail compare ignoring letter case (a
 * table made with a _bin or _cs collation would hold "alice" and "ALICE"
 * as two users, and find neither for the other). */
int mysql_schema_check(struct db *db)
{
	struct db_mysql *d = db_mysql(db);
	struct column login, mail;
	int status = dbm_ready(d);
	if (status != DB_OK || (status = column_info(d, "user", "login", &login)) != DB_OK ||
	    (status = column_info(d, "user", "mail", &mail)) != DB_OK)
		return status;
	if (strstr(login.charset, "/cs") == NULL && strstr(mail.charset, "/cs") == NULL)
		return DB_OK;
	snprintf(d->error, sizeof d->error,
		 "mysql: table user compares %s with letter case (a _bin or _cs collation), "
		 "where tpops' login rule ignores it: upgrade it with tpops-dbinit",
		 strstr(login.charset, "/cs") != NULL ? "logins" : "addresses");
	return DB_PERMFAIL;
}

int mysql_schema_install(struct db *db)
{
	struct db_mysql *d = db_mysql(db);
	int status = dbm_ready(d);
	if (status != DB_OK || (status = create_tables(d)) != DB_OK ||
	    (status = upgrade_user(d)) != DB_OK || (status = restore_negated_quotas(d)) != DB_OK ||
	    (status = upgrade_msg(d)) != DB_OK || (status = upgrade_locks(d)) != DB_OK ||
	    (status = store_salt_key(d)) != DB_OK)
		return status;
	/* statements prepared before the upgrade describe the old tables */
	dbm_close_statements(d);
	d->cached_id = 0;
	return DB_OK;
}
