/* The SCRAM salt key: AuthSecret, or the database's, read once. */
#include "auth_secret.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "log.h"
#include "sasl.h"
#include "xalloc.h"

static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
static char *stored_key; /* from the database, once read */
static bool warned;

bool auth_salt_key(const struct config *cfg, struct db *db, struct buf *key)
{
	if (cfg->auth_secret != NULL && strlen(cfg->auth_secret) >= SASL_SCRAM_SALT_KEY_MIN) {
		buf_append_str(key, cfg->auth_secret);
		return true;
	}
	pthread_mutex_lock(&mutex);
	if (stored_key == NULL) {
		char *value = NULL;
		int status = db->ops->salt_key(db, &value);
		if (status == DB_OK && value != NULL && strlen(value) >= SASL_SCRAM_SALT_KEY_MIN) {
			stored_key = value;
			value = NULL;
		} else if (status != DB_TEMPFAIL && !warned) {
			warned = true;
			log_warn("no SCRAM salt key in the database (%s): run tpops-dbinit, or set "
				 "AuthSecret; until then the SCRAM salts of unknown logins derive "
				 "from Hostname",
				 status == DB_OK ? "too short" : db_error(db));
		}
		if (value != NULL)
			free_secret(value, strlen(value) + 1);
	}
	bool found = stored_key != NULL;
	if (found)
		buf_append_str(key, stored_key);
	pthread_mutex_unlock(&mutex);
	return found;
}
