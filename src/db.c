/* The database engine registry and helpers shared by every engine. */
#include "db.h"

#include <openssl/rand.h>

#include "base64.h"
#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

const struct db_ops *db_engine(const struct config *cfg)
{
	switch (cfg->database) {
	case DATABASE_SQLITE:
		return &db_sqlite_ops;
	case DATABASE_MYSQL:
		return &db_mysql_ops;
	}
	return NULL;
}

int db_open(const struct config *cfg, struct db **db_r, char *err, size_t errlen)
{
	const struct db_ops *ops = db_engine(cfg);
	if (ops == NULL) {
		snprintf(err, errlen, "Database: this build has no driver for the configured engine");
		return DB_PERMFAIL;
	}
	return ops->open(cfg, db_r, err, errlen);
}

int db_create(const struct config *cfg, struct db **db_r, char *err, size_t errlen)
{
	const struct db_ops *ops = db_engine(cfg);
	if (ops == NULL || ops->create == NULL)
		return db_open(cfg, db_r, err, errlen);
	return ops->create(cfg, db_r, err, errlen);
}

void db_close(struct db *db)
{
	if (db != NULL)
		db->ops->close(db);
}

const char *db_error(struct db *db)
{
	return db->ops->error(db);
}

void user_clear(struct user *u)
{
	free(u->login);
	if (u->passwd != NULL)
		free_secret(u->passwd, strlen(u->passwd));
	free(u->mail);
	free(u->maildir);
	*u = (struct user){0};
}

char *db_new_salt_key(void)
{
	unsigned char random[32];
	if (RAND_bytes(random, sizeof random) != 1)
		return NULL;
	char *key = xmalloc(BASE64_ENCODED_LEN(sizeof random) + 1);
	base64_encode(random, sizeof random, key);
	wipe(random, sizeof random);
	return key;
}
